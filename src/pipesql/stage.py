"""What every stage script shares: expected failures become one clear line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pipesql.io import DataError
from pipesql.params.base import ParamsError


def run_stage(main: Callable[[], None]) -> None:
    """Call a stage's main; bad params or bad input data exit 1 with the message that names them."""
    try:
        main()
    except (ParamsError, DataError) as e:
        sys.exit(f"error: {e}")
