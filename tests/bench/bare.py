"""The bare endpoint the service is measured against: Starlette answering "ok", nothing more.

It runs under the same uvicorn settings as `visma-hooks serve` (service/cli.py), so the ratio
between the two is the cost of verifying and durably storing a delivery.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def ok(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/webhooks/visma", ok, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "tests.bench.bare:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        access_log=False,
    )


if __name__ == "__main__":
    main()
