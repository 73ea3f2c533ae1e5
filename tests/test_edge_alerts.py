"""Alert hygiene: Slack gets outside text escaped and bounded, and alert targets are treated as
Standard Webhooks asks (410 Gone stops, secrets of 24-64 bytes, a schedule over a day, a
15-30 s timeout)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.domain import SendOutcome, retry_delay, send_outcome, slack_message
from service.domain.alerts import SLACK_TEXT_LIMIT, slack_cut, slack_escape
from service.settings import Settings
from service.simulator import Outcome
from tests.sink import Sink, running_sink, slack_problem
from tests.test_e2e_alerts import alert_list, alert_stack, wait_for_status

ERP_API = "Visma.net ERP API"
MENTION = "<!channel> & <@U024BE7LH> <https://evil.example|click>"
ESCAPED_MENTION = "&lt;!channel&gt; &amp; &lt;@U024BE7LH&gt; &lt;https://evil.example|click&gt;"
# What Slack reads as a command: a special mention, a user or channel, or a link of theirs.
SLACK_CONTROL = re.compile(r"<[!@#]|<https?://evil")


def slack_texts(message: dict[str, Any]) -> list[str]:
    """Every text of a Slack payload that Slack parses: `text` and each block's texts."""
    texts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", [])]
    return texts


def job_alert(**job: Any) -> dict[str, Any]:
    return {
        "id": "a1",
        "kind": "job.failed",
        "summary": f"Job failed: POST /v1/x: {MENTION}",
        "at": "2026-03-02T09:00:00Z",
        "job": {
            "id": "j1",
            "method": "POST",
            "path": "/v1/x/<!here>",
            "tags": {"orderRef": "<!everyone>"},
            "error": {"message": MENTION, "faultCode": "<!subteam^S1>"},
            "hint": f"Show the body's message: {MENTION}",
            **job,
        },
    }


def test_slack_message_escapes_every_outside_text_in_text_and_blocks() -> None:
    alerts = [
        job_alert(),
        {
            "id": "a2",
            "kind": "component.status",
            "summary": f"{MENTION}: operational -> major outage",
            "component": {"name": MENTION, "status": "<!channel>"},
        },
        {
            "id": "a3",
            "kind": "incident.update",
            "summary": f"Incident opened: {MENTION}",
            "incident": {
                "name": MENTION,
                "status": "<!here>",
                "shortlink": "https://stspg.io/x|<!channel>",
                "components": [{"name": MENTION}],
                "updates": [{"body": MENTION}],
            },
        },
        {
            "id": "a4",
            "kind": "jobs.burst",
            "summary": MENTION,
            "jobs": {"count": 2, "ids": [MENTION]},
        },
    ]
    for alert in alerts:
        message = slack_message(alert)
        for text in slack_texts(message):
            assert not SLACK_CONTROL.search(text), text
        assert message["text"] == slack_escape(alert["summary"])
        assert ESCAPED_MENTION in message["blocks"][0]["text"]["text"]
        assert slack_problem(json.dumps(message).encode()) is None
    incident = slack_message(alerts[2])["blocks"][0]["text"]["text"]
    # Our own link survives, its target kept whole.
    assert "<https://stspg.io/x%7C&lt;!channel&gt;|" in incident


def test_slack_text_is_bounded_and_cut_between_whole_entities() -> None:
    for filler in range(10):
        alert = job_alert(error={"message": "x" * filler + "&" * 5000})
        alert["summary"] = "y" * filler + "<&>" * 2000
        message = slack_message(alert)
        for text in slack_texts(message):
            assert len(text) <= SLACK_TEXT_LIMIT
            assert_whole_entities(text)
        assert message["text"].endswith("…")
        assert html.unescape(message["text"].removesuffix("…")) in alert["summary"]


def assert_whole_entities(text: str) -> None:
    # Every `&` starts one of the three entities Slack knows; no half of one is left.
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", text), text[-20:]


@given(st.text(alphabet="a&<>", max_size=60), st.integers(min_value=2, max_value=70))
def test_slack_cut_never_splits_an_entity(raw: str, limit: int) -> None:
    cut = slack_cut(slack_escape(raw), limit)
    assert len(cut) <= max(limit, 1)
    assert_whole_entities(cut)
    kept = cut.removesuffix("…") if len(slack_escape(raw)) > limit else cut
    assert raw.startswith(html.unescape(kept))


def test_send_outcome_of_410_is_gone_at_once() -> None:
    assert send_outcome(410, attempts=1, max_attempts=16) is SendOutcome.GONE
    assert send_outcome(404, attempts=1, max_attempts=16) is SendOutcome.RETRY
    assert send_outcome(500, attempts=16, max_attempts=16) is SendOutcome.FAILED


def test_default_retry_schedule_spans_a_day_and_timeout_is_in_the_spec_range() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    waits = [
        retry_delay(
            attempt,
            base_seconds=settings.ALERT_RETRY_BASE_SECONDS,
            max_seconds=settings.ALERT_RETRY_MAX_SECONDS,
        )
        for attempt in range(1, settings.ALERT_MAX_ATTEMPTS)
    ]
    assert waits[0] <= 5  # the spec's first retry comes after 5 s
    assert max(waits) <= 10 * 3600  # and no two are more than 10 h apart
    assert sum(waits) >= 24 * 3600
    assert 15 <= settings.ALERT_TIMEOUT_SECONDS <= 30


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_YWJj", "decodes to 3 bytes"),
        ("whsec_" + "QUFB" * 22, "decodes to 66 bytes"),
        ("whsec_not base64 at all!", "is not base64"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with whsec_"),
    ],
)
def test_signing_secret_must_decode_to_24_to_64_bytes(secret: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, ALERT_SIGNING_SECRET=secret)  # type: ignore[call-arg]
    [error] = caught.value.errors()
    assert error["loc"] == ("ALERT_SIGNING_SECRET",)
    assert problem in error["msg"]
    assert secret not in str(error["msg"])


@pytest.mark.parametrize("size", [24, 32, 64])
def test_signing_secrets_of_24_to_64_bytes_are_accepted(size: int) -> None:
    import base64

    secret = "whsec_" + base64.b64encode(bytes(range(size))).decode()
    settings = Settings(_env_file=None, ALERT_SIGNING_SECRET=secret)  # type: ignore[call-arg]
    assert settings.ALERT_SIGNING_SECRET.get_secret_value() == secret


@pytest.fixture(name="sink")
async def fixture_sink() -> AsyncIterator[Sink]:
    async with running_sink() as sink:
        yield sink


async def test_alert_target_answering_410_is_not_tried_again(
    clean_database: str, sink: Sink
) -> None:
    sink.gone.add("/hook/gone")
    async with alert_stack(
        clean_database, sink, ALERT_WEBHOOK_URLS=[f"{sink.url}/hook/gone"]
    ) as stack:
        await stack.simulator.statuspage.set_component(ERP_API, "major_outage")
        [slack] = await sink.wait_for("/slack/a", 1)
        [alert] = await alert_list(stack)
        alert = await wait_for_status(stack, alert["id"], "gone")
        webhook, slack_target = alert["deliveries"]
        assert webhook["state"] == "gone" and webhook["nextAttemptAt"] is None
        assert [(a["statusCode"], a["answer"]) for a in webhook["attempts"]] == [
            (410, "this hook was removed")
        ]
        assert slack_target["state"] == "sent"
        # A later alert, sent to the end: a retry of the first (due before it) would have been
        # claimed first. The gone hook had one request per alert, the first alert's only one.
        await stack.simulator.statuspage.set_component(ERP_API, "operational")
        await sink.wait_for("/slack/a", 2)
        alerts = await alert_list(stack)
        later = next(a for a in alerts if a["id"] != alert["id"])
        await wait_for_status(stack, later["id"], "gone")
        assert [h.status for h in sink.hits if h.path == "/hook/gone"] == [410, 410]
        first = await wait_for_status(stack, alert["id"], "gone")
        assert len(first["deliveries"][0]["attempts"]) == 1
        assert slack.status == 200


async def test_visma_error_text_reaches_slack_escaped(clean_database: str, sink: Sink) -> None:
    async with alert_stack(clean_database, sink, ALERT_WEBHOOK_URLS=[]) as stack:
        stack.simulator.script(Outcome(kind="bad_request", message=MENTION))
        job = await stack.submit(path="/v1/salesorder")
        assert (await stack.wait_for_end(job["id"]))["state"] == "failed"
        # The job's alert and its issue's (issue.opened): both carry Visma's text, escaped.
        slacks = await sink.wait_for("/slack/a", 2)
        for slack in slacks:
            message = slack.json()
            for text in slack_texts(message):
                assert not SLACK_CONTROL.search(text), text
            assert ESCAPED_MENTION in message["blocks"][0]["text"]["text"]
        [job_alert] = [s.json() for s in slacks if "job.failed" in json.dumps(s.json()["blocks"])]
        assert ESCAPED_MENTION in job_alert["text"]
