"""The route table, without sockets: matching, parameters, 404/405 data, registration rules."""

from __future__ import annotations

import pytest

from surge.admin import Router, json_response


def handler(request):
    return json_response({})


def other(request):
    return json_response({})


def test_a_parameter_segment_captures_the_percent_decoded_value() -> None:
    router = Router()
    router.add("DELETE", "/api/services/{name}/upstreams/{address}", handler)
    match = router.resolve("DELETE", "/api/services/api/upstreams/127.0.0.1%3A8101")
    assert match.handler is handler
    assert match.params == {"name": "api", "address": "127.0.0.1:8101"}


def test_an_encoded_slash_stays_inside_its_segment() -> None:
    router = Router()
    router.add("GET", "/keys/{key}", handler)
    assert router.resolve("GET", "/keys/a%2Fb").params == {"key": "a/b"}
    assert router.resolve("GET", "/keys/a/b").allowed == ()


def test_a_literal_route_beats_a_parameter_route_whatever_the_order() -> None:
    router = Router()
    router.add("GET", "/api/jobs/{id}", other)
    router.add("GET", "/api/jobs/queues", handler)
    assert router.resolve("GET", "/api/jobs/queues").handler is handler
    assert router.resolve("GET", "/api/jobs/42").handler is other


def test_no_matching_pattern_means_nothing_allowed() -> None:
    router = Router()
    router.add("GET", "/healthz", handler)
    for path in ("/health", "/healthz/", "/", "/healthz/x"):
        match = router.resolve("GET", path)
        assert match.handler is None and match.allowed == ()


def test_an_empty_segment_does_not_fill_a_parameter() -> None:
    router = Router()
    router.add("GET", "/api/services/{name}", handler)
    assert router.resolve("GET", "/api/services/").handler is None


def test_a_path_known_under_other_methods_lists_them_for_405() -> None:
    router = Router()
    router.add("POST", "/api/reload", handler)
    router.add("GET", "/api/reload", other)
    match = router.resolve("PUT", "/api/reload")
    assert match.handler is None
    assert match.allowed == ("GET", "HEAD", "POST")


def test_head_is_served_by_the_get_route() -> None:
    router = Router()
    router.add("get", "/metrics", handler)
    assert router.resolve("HEAD", "/metrics").handler is handler


def test_registering_the_same_method_and_pattern_twice_is_refused() -> None:
    router = Router()
    router.add("GET", "/a/{x}", handler)
    with pytest.raises(ValueError, match="already registered"):
        router.add("GET", "/a/{x}", other)
    router.add("POST", "/a/{x}", other)  # another method is fine
    assert router.routes() == [("GET", "/a/{x}"), ("POST", "/a/{x}")]


@pytest.mark.parametrize("pattern", ["no-slash", "/a/{x}/{x}", "/a/{1x}", "/a/pre{x}", "/a/{x"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        Router().add("GET", pattern, handler)
