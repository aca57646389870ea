"""Surge keeps a Python backend standing while it grows."""

from surge import _compiled

__version__ = "0.1.0"

# 'compiled' (mypyc, the build's default where a C compiler exists), 'source' or 'stale'.
DATA_PATH = _compiled.choose()
