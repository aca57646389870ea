"""Surge keeps a Python backend standing while it grows."""

__version__ = "0.1.0"
