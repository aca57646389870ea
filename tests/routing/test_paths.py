"""Path normalisation (pure): a table of cases, the refusals, and properties that hold for any
path: the normal form is a fixed point, holds no dot-segment, never names a parent of `/`, and
agrees with RFC 3986 5.2.4's own algorithm wherever the RFC does not climb above the root."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.errors import BadPath
from surge.observe.problem import INVALID_PATH
from surge.routing.paths import normalize

# Paths are latin-1 text, one character per byte of the request, as the route table reads them.
CASES = [
    # (path, normal form) with the defaults: encoded slashes refused, slashes not merged.
    ("/", "/"),
    ("/st/echo", "/st/echo"),
    ("/raw/../st/echo", "/st/echo"),
    ("/st/./echo", "/st/echo"),
    ("/st/echo/.", "/st/echo/"),
    ("/st/echo/..", "/st/"),
    ("/st/a/b/../../echo", "/st/echo"),
    ("/./st/echo", "/st/echo"),
    ("/..a/.b/c..", "/..a/.b/c.."),                  # dots inside names are names
    ("/st/.hidden", "/st/.hidden"),
    ("/%73%74/echo", "/st/echo"),                    # unreserved letters decoded
    ("/st/%7Euser/a%2Db%5fc%2e", "/st/~user/a-b_c."),
    ("/raw/%2e%2E/st/echo", "/st/echo"),             # encoded dots are dots
    ("/raw/.%2e/st/echo", "/st/echo"),
    ("/st/a%20b", "/st/a%20b"),                      # reserved and other bytes stay encoded
    ("/st/a%3fb%3F", "/st/a%3Fb%3F"),                # with their hex upper-cased
    ("/st/%25%32%46", "/st/%252F"),                  # no double decoding
    ("/st/caf%c3%a9", "/st/caf%C3%A9"),
    ("//st//echo", "//st//echo"),                    # slashes kept unless merging
    ("/st//../echo", "/st/echo"),                    # `..` pops the empty segment
]


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_normal_form(path, expected):
    assert normalize(path) == expected


def test_an_already_normal_path_is_returned_as_is():
    path = "/st/echo/x.json"
    assert normalize(path) is path


@pytest.mark.parametrize(("path", "expected"), [
    ("//st//echo", "/st/echo"),
    ("/st///echo//", "/st/echo/"),
    ("/st//..//echo", "/echo"),                      # merged first, as nginx does
])
def test_merging_slashes(path, expected):
    assert normalize(path, merge_slashes=True) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/st/a%2fb", "/st/a%2Fb"),
    ("/st/a%5cb", "/st/a%5Cb"),
    ("/st/a%2F..%2Fb", "/st/a%2F..%2Fb"),            # one segment: not a dot-segment
])
def test_keeping_encoded_slashes(path, expected):
    assert normalize(path, keep_encoded_slash=True) == expected


@pytest.mark.parametrize(("path", "why"), [
    ("/..", "climbs above the root"),
    ("/../st/echo", "climbs above the root"),
    ("/st/../../echo", "climbs above the root"),
    ("/%2e%2e/st", "climbs above the root"),
    ("/st/a%2Fb", "encoded slash"),
    ("/st/a%2fb", "encoded slash"),
    ("/st/a%5Cb", "encoded slash"),
    ("/st/a%", "malformed percent-encoding"),
    ("/st/a%4", "malformed percent-encoding"),
    ("/st/a%zz", "malformed percent-encoding"),
    ("/st/a%%41", "malformed percent-encoding"),
])
def test_refused(path, why):
    with pytest.raises(BadPath, match=why) as refused:
        normalize(path)
    assert refused.value.problem is INVALID_PATH and INVALID_PATH.status == 400


# -- properties ------------------------------------------------------------------------------

_SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "%2e", "%2E%2e", ".%2E", "a", "b%41", "%7e", "%3f", "%c3"]),
    st.text(alphabet="abc.-_~%2eE", max_size=5),
)
PATHS = st.lists(_SEGMENT, max_size=8).map(lambda s: "/" + "/".join(s))


def _normal_or_none(path: str, **options: bool) -> str | None:
    try:
        return normalize(path, **options)
    except BadPath:
        return None


def _segments(path: str) -> list[str]:
    return path[1:].split("/")


def rfc3986_remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 as written, on the input and output buffers."""
    source, out = path, ""
    while source:
        if source.startswith(("../", "./")):
            source = source[source.index("/") + 1:]
        elif source.startswith("/./") or source == "/.":
            source = "/" + source[3:] if source != "/." else "/"
        elif source.startswith("/../") or source == "/..":
            source = "/" + source[4:] if source != "/.." else "/"
            out = out[:out.rfind("/")] if "/" in out else ""
        elif source in (".", ".."):
            source = ""
        else:
            end = source.find("/", 1)
            end = len(source) if end < 0 else end
            out, source = out + source[:end], source[end:]
    return out


def _climbs(path: str) -> bool:
    depth = 0
    for segment in _segments(path):
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment != ".":
            depth += 1
    return False


@given(PATHS, st.booleans(), st.booleans())
def test_the_normal_form_is_a_fixed_point(path, keep, merge):
    normal = _normal_or_none(path, keep_encoded_slash=keep, merge_slashes=merge)
    if normal is not None:
        assert normalize(normal, keep_encoded_slash=keep, merge_slashes=merge) == normal


@given(PATHS, st.booleans(), st.booleans())
def test_the_normal_form_holds_no_dot_segment(path, keep, merge):
    normal = _normal_or_none(path, keep_encoded_slash=keep, merge_slashes=merge)
    if normal is not None:
        assert normal.startswith("/")
        assert not {".", ".."} & set(_segments(normal))
        assert "%2E" not in normal.upper()
        if merge:
            assert "//" not in normal


def _decoded(path: str) -> str | None:
    """The escapes decoded as `normalize` decodes them, no dot-segment removed (each `.` is
    disguised as a `Q` meanwhile); None when an escape is malformed."""
    disguised = path.replace(".", "Q").replace("%2e", "%51").replace("%2E", "%51")
    return None if (d := _normal_or_none(disguised)) is None else d.replace("Q", ".")


@given(PATHS)
def test_a_path_is_refused_exactly_when_it_climbs_above_the_root(path):
    decoded = _decoded(path)
    if decoded is None:
        assert _normal_or_none(path) is None  # a malformed escape
    else:
        assert (_normal_or_none(path) is None) == _climbs(decoded)


@given(PATHS)
def test_agrees_with_rfc3986_where_the_root_is_not_climbed(path):
    normal = _normal_or_none(path)
    if normal is not None:
        decoded = _decoded(path)
        assert decoded is not None
        assert normal == rfc3986_remove_dot_segments(decoded)
