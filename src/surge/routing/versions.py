"""Reading the API version a request asks for (`versioning:` in surge.yaml): the configured
header first, then the query parameter, else the default. Pure and compiled with the data
path; built once per snapshot, `read` runs only when the config has a `versioning` section.
The header and the parameter are read, never removed: both reach the upstream unchanged."""

from __future__ import annotations

from urllib.parse import unquote_plus


class VersionReader:
    __slots__ = ("header", "query", "default")

    def __init__(self, header: str | None, query: str | None, default: str | None) -> None:
        self.header: bytes | None = header.lower().encode("latin-1") if header else None
        self.query: str | None = query + "=" if query else None
        self.default = default

    def read(self, headers: list[tuple[bytes, bytes]], query: str) -> str | None:
        """The version asked for: `headers` are the request's (name, value) pairs as
        received, `query` the target's text after `?` ("" when none)."""
        header = self.header
        if header is not None:
            for name, value in headers:
                if len(name) == len(header) and name.lower() == header:
                    return value.decode("latin-1").strip()
        wanted = self.query
        if wanted is not None and query:
            for part in query.split("&"):
                if part.startswith(wanted):
                    return unquote_plus(part[len(wanted):])
        return self.default
