"""The train stage's library: SFTTrainer + PEFT set-up, checkpoints that survive kills, the
divergence guard, launch profiles.

Importing the package is cheap (no torch): the stage script decides how to launch itself with
`pipesql.training.launch` before anything heavy is loaded; `pipesql.training.train.train` does
the work inside the launched processes.
"""
