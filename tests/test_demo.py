"""The demo runs the whole path against the simulator and checks itself."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from service.demo import SCENARIOS, run_demo

pytestmark = pytest.mark.e2e


async def test_demo_ends_every_job_as_expected() -> None:
    out = io.StringIO()
    assert await run_demo(Console(file=out, width=160), timeout=30)
    text = out.getvalue()
    assert "every job ended as expected" in text
    for scenario in SCENARIOS:
        assert scenario.title in text
