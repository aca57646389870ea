"""The ASGI middleware and the route decorator, driven through a real Starlette app."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from surge.ratelimit.asgi import RateLimitMiddleware, rate_limit
from surge.ratelimit.keys import MemoryKeyStore
from surge.ratelimit.limiter import Limiter
from surge.ratelimit.registry import KeyRegistry
from surge.ratelimit.settings import RateLimitSettings

SECTION = {
    "plans": {"anonymous": ["2/minute"], "free": ["3/minute"], "premium": ["6/minute"]},
    "default_plan": "anonymous",
}


async def hello(request):
    return PlainTextResponse("hello")


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def keys():
    store = MemoryKeyStore()
    registry = KeyRegistry(store)
    free, _ = store.create("free user", "free")
    premium, _ = store.create("paying user", "premium")
    registry.refresh()
    return registry, free, premium


def guarded_app(limiter, **options):
    app = Starlette(routes=[Route("/hello", hello)])
    return RateLimitMiddleware(app, limiter, **options)


async def statuses(client, n, **kwargs):
    return [(await client.get("/hello", **kwargs)).status_code for _ in range(n)]


async def test_anonymous_clients_get_the_default_plan_then_a_429_problem():
    limiter = Limiter(RateLimitSettings.from_config(SECTION))
    async with client_for(guarded_app(limiter)) as client:
        ok = await client.get("/hello")
        assert ok.status_code == 200 and ok.text == "hello"
        assert ok.headers["RateLimit-Policy"] == '"anonymous";q=2;w=60'
        assert ok.headers["RateLimit"] == '"anonymous";r=1;t=30'
        await client.get("/hello")
        limited = await client.get("/hello")
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["Retry-After"] == "30"
    assert limited.headers["RateLimit"] == '"anonymous";r=0;t=60'
    doc = limited.json()
    assert doc["status"] == 429 and doc["type"].endswith("/rate-limited") and doc["title"]
    assert "anonymous" in doc["detail"]


async def test_free_and_premium_keys_each_get_their_own_plan(keys):
    registry, free, premium = keys
    limiter = Limiter(RateLimitSettings.from_config(SECTION))
    async with client_for(guarded_app(limiter, registry=registry)) as client:
        free_codes = await statuses(client, 5, headers={"Authorization": f"Bearer {free}"})
        premium_codes = await statuses(client, 8, headers={"X-API-Key": premium})
        anonymous_codes = await statuses(client, 3)
    assert free_codes == [200] * 3 + [429] * 2
    assert premium_codes == [200] * 6 + [429] * 2
    assert anonymous_codes == [200] * 2 + [429]


async def test_a_bad_or_revoked_key_gets_401_and_never_reaches_the_store(keys):
    registry, free, _ = keys
    limiter = Limiter(RateLimitSettings.from_config(SECTION))
    registry.store.revoke(free)
    registry.refresh()
    async with client_for(guarded_app(limiter, registry=registry)) as client:
        for key in (free, "sk_" + "A" * 43, "x" * 5000):
            answer = await client.get("/hello", headers={"X-API-Key": key})
            assert answer.status_code == 401
            assert answer.json()["type"].endswith("/unauthorized")
    assert len(limiter.store) == 0


async def test_a_key_whose_plan_left_the_config_counts_on_the_default_plan(keys):
    registry, free, _ = keys
    section = {**SECTION, "plans": {"anonymous": ["2/minute"], "premium": ["6/minute"]}}
    limiter = Limiter(RateLimitSettings.from_config(section))
    async with client_for(guarded_app(limiter, registry=registry)) as client:
        assert await statuses(client, 3, headers={"X-API-Key": free}) == [200, 200, 429]


async def test_a_custom_identity_counts_per_whatever_it_returns():
    limiter = Limiter(RateLimitSettings.from_config(SECTION))
    app = guarded_app(limiter, identify=lambda scope: scope["path"])
    async with client_for(app) as client:
        assert await statuses(client, 3) == [200, 200, 429]


async def test_the_decorator_counts_each_endpoint_on_its_own_with_a_cost():
    limiter = Limiter(RateLimitSettings.from_config(SECTION))

    @rate_limit(limiter, plan="premium", cost=2)
    async def expensive(request):
        return JSONResponse({"ok": True})

    @rate_limit(limiter)
    async def cheap(request):
        return PlainTextResponse("cheap")

    app = Starlette(routes=[Route("/expensive", expensive), Route("/cheap", cheap)])
    async with client_for(app) as client:
        expensive_codes = [(await client.get("/expensive")).status_code for _ in range(4)]
        cheap_answers = [await client.get("/cheap") for _ in range(3)]
    assert expensive_codes == [200, 200, 200, 429]  # 6 units, 2 each
    assert [a.status_code for a in cheap_answers] == [200, 200, 429]
    assert cheap_answers[0].headers["RateLimit"] == '"anonymous";r=1;t=30'


async def test_shaping_holds_a_burst_instead_of_rejecting_it():
    section = {"plans": {"anonymous": ["20/second"]}, "algorithm": "shaping",
               "max_delay": "200ms"}
    limiter = Limiter(RateLimitSettings.from_config(section))
    async with client_for(guarded_app(limiter)) as client:
        codes = await statuses(client, 3)
    assert codes == [200, 200, 200]
    assert limiter.counters()["plans"]["anonymous"]["allowed"] == 3


def test_an_unknown_plan_on_the_decorator_fails_at_setup():
    limiter = Limiter(RateLimitSettings.from_config(SECTION))
    from surge.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown plan"):
        rate_limit(limiter, plan="gold")


async def test_an_endpoint_limit_inside_the_middleware_reports_its_own_headers():
    limiter = Limiter(RateLimitSettings.from_config(SECTION))

    @rate_limit(limiter, plan="premium", cost=2)
    async def expensive(request):
        return JSONResponse({"ok": True})

    app = RateLimitMiddleware(Starlette(routes=[Route("/expensive", expensive)]), limiter)
    async with client_for(app) as client:
        answer = await client.get("/expensive")
    assert answer.headers.get_list("RateLimit") == ['"premium";r=4;t=20']


async def test_a_decorated_endpoint_inside_the_middleware_knows_its_keys_and_charges_its_cost(
    keys,
):
    registry, free, _ = keys
    limiter = Limiter(RateLimitSettings.from_config(SECTION))

    @rate_limit(limiter, cost=2)
    async def report(request):
        return JSONResponse({"ok": True})

    app = RateLimitMiddleware(Starlette(routes=[Route("/report", report)]), limiter,
                              registry=registry)
    bearer = {"Authorization": f"Bearer {free}"}
    async with client_for(app) as client:
        answers = [await client.get("/report", headers=bearer) for _ in range(2)]
        bad = await client.get("/report", headers={"X-API-Key": "sk_" + "x" * 40})
    assert [a.status_code for a in answers] == [200, 429]  # free: 3/minute, 2 units a call
    assert answers[0].headers.get_list("RateLimit") == ['"free";r=1;t=40']
    assert bad.status_code == 401


async def test_a_decorator_outside_any_middleware_knows_the_keys_of_its_own_registry(keys):
    registry, free, _ = keys
    limiter = Limiter(RateLimitSettings.from_config(SECTION))

    @rate_limit(limiter, registry=registry)
    async def report(request):
        return JSONResponse({"ok": True})

    async with client_for(Starlette(routes=[Route("/report", report)])) as client:
        answer = await client.get("/report", headers={"X-API-Key": free})
    assert answer.status_code == 200 and answer.headers["RateLimit"] == '"free";r=2;t=20'
