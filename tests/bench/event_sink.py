"""The routed-events load's target: a loopback server that takes every forward and counts the
notifications it received (`GET /count?prefix=...`), so the benchmark can hold what the
targets got against what the service acknowledged.

    python -m tests.bench.event_sink --port 8002
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NOTIFICATION_HEADER = "visma-notification-id"
received: set[str] = set()
sends = 0


async def take(request: Request) -> Response:
    global sends
    await request.body()
    sends += 1
    received.add(request.headers.get(NOTIFICATION_HEADER, ""))
    return Response(status_code=204)


async def count(request: Request) -> Response:
    prefix = request.query_params.get("prefix", "")
    return JSONResponse(
        {"received": sum(1 for n in received if n.startswith(prefix)), "sends": sends}
    )


app = Starlette(
    routes=[
        Route("/forward/{name}", take, methods=["POST"]),
        Route("/count", count, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
