"""Request path normalisation (pure): the one spelling of a path that routing, policies and the
upstream all see, so that `/raw/../st/echo` cannot reach the `/st` route's upstream while
dodging the `/st` route's `methods` or `rate_limit`.

What `normalize` does, in RFC 3986's order (6.2.2): decode percent-encoded unreserved characters
(ALPHA DIGIT `-` `.` `_` `~`) and upper-case the hex of the escapes that stay (6.2.2.1-2);
optionally merge repeated slashes; remove dot-segments (5.2.4). A path that climbs above the
root, an escape that is not `%` and two hex digits, and (unless kept) an encoded `/` or `\\`
are refused with `BadPath`: each is a way to make two components read one path two ways.

Works on the path alone, as latin-1 text (one character per byte of the request, as the route
table reads it): the caller splits off the query (kept as sent) and the fragment (never
forwarded). Text rather than bytes because it runs per request in the compiled data path and
`"%" in text` is one plain C call, where `bytes` first tries its operand as an integer and
`bytes.find` parses its arguments: the usual path (no `%`, no segment starting with `.`, no
`//` when merging) costs two or three `in` tests."""

from __future__ import annotations

from typing import Final

from surge.errors import BadPath

_HEX: Final = "0123456789ABCDEF"
# What an escape decodes to in place: RFC 3986's unreserved set.
_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize(path: str, keep_encoded_slash: bool = False, merge_slashes: bool = False) -> str:
    """The normal form of `path` (an absolute path, starting with `/`), or `BadPath`; `path`
    itself when it is already normal."""
    escaped = "%" in path
    if not escaped and "/." not in path and not (merge_slashes and "//" in path):
        return path  # the data path's usual case
    if escaped:
        path = _decode_unreserved(path, keep_encoded_slash)
    if merge_slashes:
        while "//" in path:
            path = path.replace("//", "/")
    return _remove_dot_segments(path)


def _decode_unreserved(path: str, keep_encoded_slash: bool) -> str:
    parts: list[str] = []
    start = 0
    i = path.find("%")
    while i >= 0:
        high, low = _hex_value(path, i + 1), _hex_value(path, i + 2)
        if high < 0 or low < 0:
            raise BadPath(f"malformed percent-encoding at byte {i} of the path")
        char = chr(high * 16 + low)
        parts.append(path[start:i])
        if char in _UNRESERVED:
            parts.append(char)
        elif (char == "/" or char == "\\") and not keep_encoded_slash:
            raise BadPath("an encoded slash (%2F or %5C) in the path is refused "
                          "(gateway.paths.encoded_slash: reject)")
        else:
            parts.append("%" + _HEX[high] + _HEX[low])
        start = i + 3
        i = path.find("%", start)
    parts.append(path[start:])
    return "".join(parts)


def _hex_value(path: str, i: int) -> int:
    """The value of the hex digit at `path[i]`, -1 when there is none."""
    if i >= len(path):
        return -1
    c = ord(path[i])
    if 48 <= c <= 57:      # 0-9
        return c - 48
    if 65 <= c <= 70:      # A-F
        return c - 55
    if 97 <= c <= 102:     # a-f
        return c - 87
    return -1


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path, except that `..` at the root is refused rather than
    dropped: a client that asks for a parent of `/` is probing, not browsing."""
    if "/." not in path:
        return path
    kept: list[str] = []
    segments = path[1:].split("/")
    for segment in segments:
        if segment == "..":
            if not kept:
                raise BadPath("the path climbs above the root")
            kept.pop()
        elif segment != ".":
            kept.append(segment)
    # A path ending in a dot-segment names a directory: `/a/b/..` is `/a/`, as in RFC 3986.
    trail = "/" if kept and segments[-1] in (".", "..") else ""
    return "/" + "/".join(kept) + trail
