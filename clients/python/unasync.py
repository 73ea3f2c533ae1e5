"""Writes `_sync.py` (`Client`) from `_async.py` (`AsyncClient`): the same calls, blocking I/O.

Run `python clients/python/unasync.py` after changing `_async.py`; a test checks the two are
in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).parent / "src" / "visma_hooks_client"

_REPLACEMENTS = [
    (
        '"""`AsyncClient`: the service\'s API for asyncio code."""',
        '"""`Client`: the service\'s API for plain (blocking) code; written from `_async.py` by\n'
        'clients/python/unasync.py, do not edit."""',
    ),
    ("import asyncio\n", ""),
    ("AsyncIterator, Mapping, Sequence", "Iterator, Mapping, Sequence"),
    ("class AsyncClient:", "class Client:"),
    (
        "`async with AsyncClient(url, token) as client: job = await client.submit(...)`",
        "`with Client(url, token) as client: job = client.submit(...)`",
    ),
    ("httpx.AsyncBaseTransport", "httpx.BaseTransport"),
    ("httpx.AsyncClient(", "httpx.Client("),
    ("async def __aenter__(self) -> AsyncClient:", "def __enter__(self) -> Client:"),
    ("async def __aexit__(", "def __exit__("),
    ("await self.aclose()", "self.close()"),
    ("async def aclose(self) -> None:", "def close(self) -> None:"),
    ("await self._http.aclose()", "self._http.close()"),
    ("await asyncio.sleep(", "time.sleep("),
    ("AsyncIterator[Job]", "Iterator[Job]"),
    ("async def ", "def "),
    ("await ", ""),
    (
        "for job in pages.take(response):  # (no `yield from` in an async generator)\n"
        "                yield job",
        "yield from pages.take(response)",
    ),
]


def sync_source(async_source: str) -> str:
    """`_async.py`'s text made blocking."""
    text = async_source
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    return text


def main() -> int:
    source = (PACKAGE / "_async.py").read_text()
    (PACKAGE / "_sync.py").write_text(sync_source(source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
