"""The quickstart's backend: a small Starlette app that `surge up` runs as two replicas.

    python examples/quickstart/app.py --port 8101 --name a

GET /            {"message": "hello from surge", "replica": NAME, "port": PORT}
GET /healthz     {"status": "ok"}
GET /work?ms=50  burns CPU for that long (for autoscaling demos); capped at 10 s
POST /echo       the request body back

The replica's name comes from `--name`, else `$REPLICA_NAME`, else `$SURGE_REPLICA` (set by
`surge up` for the replicas of a service's `process`, e.g. `api-1`), else its port."""

from __future__ import annotations

import argparse
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_WORK_MS = 10_000


def _replica(request: Request) -> tuple[str, int]:
    port = request.scope["server"][1]
    env = os.environ
    return env.get("REPLICA_NAME") or env.get("SURGE_REPLICA") or str(port), port


async def hello(request: Request) -> JSONResponse:
    name, port = _replica(request)
    return JSONResponse({"message": "hello from surge", "replica": name, "port": port})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def work(request: Request) -> JSONResponse:
    try:
        ms = min(int(request.query_params.get("ms", "50")), MAX_WORK_MS)
    except ValueError:
        return JSONResponse({"error": "ms must be an integer"}, status_code=400)
    # Busy-loop on purpose, on the event loop: the replica saturates the way a CPU-bound
    # handler does, and its latency climbs with load so the autoscaler has something to see.
    deadline = time.perf_counter() + ms / 1000
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    name, _ = _replica(request)
    return JSONResponse({"replica": name, "ms": ms, "spins": spins})


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "text/plain"))


app = Starlette(routes=[
    Route("/", hello),
    Route("/healthz", healthz),
    Route("/work", work),
    Route("/echo", echo, methods=["POST"]),
])


def main() -> None:
    parser = argparse.ArgumentParser(description="Surge quickstart backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--name", default=None, help="defaults to $REPLICA_NAME, else the port")
    args = parser.parse_args()
    if args.name:
        os.environ["REPLICA_NAME"] = args.name
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning")


if __name__ == "__main__":
    main()
