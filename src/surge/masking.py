"""Hiding the password of every URL before it is shown: in errors, log lines, CLI output and
admin API answers. Pure text in, text out; the one place that knows what a credential in a
URL looks like (`redis://:secret@host`, `postgresql://user:secret@host/db`,
`amqp://user:secret@host`), so every output path calls `mask_credentials`."""

from __future__ import annotations

import re

MASK = "***"

# `scheme://user:password@`: the password ends at the `@`; it holds no `/`, space or quote
# (those must be percent-encoded in a URL), which also keeps one match inside one URL.
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s'\"]*):(?P<password>[^@/\s'\"]+)@")


def mask_credentials(text: str) -> str:
    """`text` with the password of each URL in it replaced by `***` (the user stays: it helps
    tell two stores apart and is no secret)."""
    if "://" not in text:  # the common case, kept cheap for log lines
        return text
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
