"""Progress bars only where a person watches: on a terminal, unless asked explicitly."""
from __future__ import annotations

import sys


def show_progress(progress: bool | None) -> bool:
    """``progress`` if given, else whether standard error is a terminal."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)
