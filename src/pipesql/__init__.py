"""pipesql: a reproducible pipeline that fine-tunes code LLMs to write pipe SQL."""

__version__ = "0.1.0"
