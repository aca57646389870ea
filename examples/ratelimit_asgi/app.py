"""A Starlette app limiting itself with Surge's rate limiting: the middleware on every request
(per API key on its plan, else per client IP on the default plan) and the decorator on one
expensive endpoint (counted on its own, 5 units a call). Same plans as the gateway's.

    cd examples/ratelimit_asgi
    surge keys create --name alice --plan free        # prints sk_... once
    uvicorn app:app --port 8080
    curl -i localhost:8080/hello                       # anonymous, by IP
    curl -i -H "Authorization: Bearer sk_..." localhost:8080/hello
    curl -i -X POST -H "Authorization: Bearer sk_..." localhost:8080/report   # 5 units of hers
    curl -i -X POST localhost:8080/report              # 5 units of the anonymous plan

State comes from ./surge.yaml (`state: local` keeps keys in .surge/state.db and counts in this
process; set `state: redis://127.0.0.1:6379/0` to share limits between many app processes).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from surge.config import load
from surge.ratelimit.asgi import RateLimitMiddleware, rate_limit
from surge.ratelimit.keys import open_key_store
from surge.ratelimit.limiter import Limiter
from surge.ratelimit.registry import KeyRegistry

HERE = Path(__file__).parent
config = load(HERE / "surge.yaml", check_support=False)
limiter = Limiter.from_config(config.rate_limits, config.state)
registry = KeyRegistry(open_key_store(config.state, str(HERE / config.data_dir)))


async def hello(request):
    decision = request.state.ratelimit  # set by the middleware
    return PlainTextResponse(f"hello, {decision.remaining} requests left\n")


@rate_limit(limiter, cost=5)  # counts the caller the middleware identified: key or IP
async def report(request):
    return JSONResponse({"report": "expensive things"})


@contextlib.asynccontextmanager
async def lifespan(app):
    registry.start()  # keys created, revoked or re-planned elsewhere apply within 0.5 s
    yield
    registry.stop()
    await limiter.close()


app = RateLimitMiddleware(
    Starlette(routes=[Route("/hello", hello), Route("/report", report, methods=["POST"])],
              lifespan=lifespan),
    limiter,
    registry=registry,
)
