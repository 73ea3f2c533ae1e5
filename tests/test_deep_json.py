"""Deliveries nested far deeper than a parser's stack, sent over real HTTP and then shown by
the dashboard, the API and the CLI: each answers, showing the raw text cut, never a 500."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from service import store
from service.domain.jsontext import CUT_MARKER, PRETTY_MAX_CHARS
from tests.cli_process import run_cli
from tests.conftest import API_TOKEN
from tests.factories import insert_job
from tests.harness import signed_delivery
from tests.stack import running_stack

STATUS_TOKEN = "status-token-deep"
DEPTH = 100_000
WIDE = 5000
ENTRY_DEPTH = 200  # deeper than shown whole, as deep as a job's JSON view serialises
DEEP = ("[" * DEPTH + "]" * DEPTH).encode()


async def test_inbox_shows_a_deeply_nested_delivery_raw_and_cut(clean_database: str) -> None:
    async with running_stack(clean_database, STATUS_WEBHOOK_TOKEN=STATUS_TOKEN) as stack:
        status = await stack.api.post(f"/webhooks/status/{STATUS_TOKEN}", content=DEEP)
        assert status.status_code < 500, status.text
        body, headers = signed_delivery(DEEP)
        visma = await stack.api.post("/webhooks/visma", content=body, headers=headers)
        assert visma.status_code < 500, visma.text
        # Both stored: the API lists them, raw.
        items = await stack.inbox()
        assert len(items) == 2
        assert all(item["body"] == DEEP.decode() for item in items)

        async with httpx.AsyncClient(base_url=stack.service_url) as browser:
            login = await browser.post("/login", data={"token": API_TOKEN, "next": "/inbox"})
            assert login.status_code == 303
            inbox = await browser.get("/inbox")
        assert inbox.status_code == 200, inbox.text[:500]
        cut = CUT_MARKER.format(count=2 * DEPTH - PRETTY_MAX_CHARS)
        shown = re.findall(r"<pre>(\[+)" + re.escape(cut) + "</pre>", inbox.text)
        assert [len(text) for text in shown] == [PRETTY_MAX_CHARS, PRETTY_MAX_CHARS]


def nested(depth: int) -> list[object]:
    """`[[[...]]]` `depth` deep, built without recursion."""
    top: list[object] = []
    inner = top
    for _ in range(depth - 1):
        child: list[object] = []
        inner.append(child)
        inner = child
    return top


async def test_a_deep_timeline_entry_shows_in_the_dashboard_and_the_cli(
    clean_database: str, tmp_path: Path
) -> None:
    """A timeline entry as deep as a job's JSON view serialises (outside values such as
    Visma's answers land in entries): the job page shows it unindented, `job` cut, `--json`
    whole."""

    engine = store.create_engine(clean_database)
    sessions = store.create_sessionmaker(engine)
    try:
        job_id = await insert_job(sessions, state="failed")
        async with sessions.begin() as session:
            await store.add_event(
                session,
                job_id,
                kind="state_read",
                source="resolver",
                at=datetime.now(UTC),
                detail={"answer": nested(ENTRY_DEPTH), "wide": list(range(WIDE))},
            )
    finally:
        await engine.dispose()
    async with running_stack(clean_database) as stack:
        async with httpx.AsyncClient(base_url=stack.service_url) as browser:
            await browser.post("/login", data={"token": API_TOKEN, "next": "/jobs"})
            page = await browser.get(f"/jobs/{job_id}")
        assert page.status_code == 200, page.text[:500]
        # Too deep to indent: shown on one line, whole (it is short).
        one_line = '{"answer": ' + "[" * ENTRY_DEPTH + "]" * ENTRY_DEPTH + ', "wide": [0, 1'
        assert one_line in html.unescape(page.text)
        api = await stack.api.get(f"/api/v1/jobs/{job_id}")
        assert api.status_code == 200
    ran = run_cli("job", job_id, cwd=tmp_path, DATABASE_URL=clean_database)
    assert ran.code == 0, ran.err
    shown = ran.out.replace("\n", "")  # as read, not as the terminal wraps it
    assert "answer: " + "[" * ENTRY_DEPTH + "]" * ENTRY_DEPTH in shown
    wide = re.search(r"wide: (.*)", shown)
    assert wide is not None
    assert wide.group(1).startswith("[0, 1, 2")
    assert re.search(r"… \(cut: \d+ more characters\)$", wide.group(1))
    as_json = run_cli("job", job_id, "--json", cwd=tmp_path, DATABASE_URL=clean_database)
    assert as_json.code == 0, as_json.err
    event = json.loads(as_json.out)["events"][-1]["detail"]  # a program gets it whole
    assert len(event["wide"]) == WIDE
