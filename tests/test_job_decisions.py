"""The core's decisions about what Visma's answers prove: tables of cases, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain import (
    JobState,
    Outcome,
    SubmittedRequest,
    decide_adoption,
    decide_read_failure,
    decide_submit_failure,
    parse_background_state,
)
from service.domain.visma_errors import HINT_READ_FORBIDDEN

IPP_ERROR = (
    b'{"ExceptionType":"IPPException","ExceptionMessage":"Busy","ExceptionFaultCode":"10000"}'
)
GATEWAY_PAGE = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (400, b'{"message": "Invalid value"}', True),
        (401, b"", True),
        (404, GATEWAY_PAGE, True),  # a 4xx is an answer about the request, whoever sent it
        (429, b"", True),
        (301, b"", True),  # a redirect is never followed: the request did not run
        (500, IPP_ERROR, True),
        (503, b'{"message": "The service is temporarily unavailable."}', True),
        (500, b"Internal Server Error", False),
        (502, GATEWAY_PAGE, False),
        (503, b"", False),
        (504, GATEWAY_PAGE, False),
        (504, b'{"error": "upstream timed out"}', False),  # JSON, but not Visma's shape
        (None, b"", False),
    ],
)
def test_decide_submit_failure_rejects_only_what_visma_refused(
    status: int | None, body: bytes, refused: bool
) -> None:
    decision = decide_submit_failure(status, body, message="ReadTimeout")
    if refused:
        assert isinstance(decision, Outcome) and decision.state is JobState.REJECTED
        assert decision.http_status == status
    else:
        assert isinstance(decision, str) and "may have reached Visma" in decision


def test_decide_submit_failure_says_why_the_fate_is_unknown() -> None:
    assert "ReadTimeout" in str(decide_submit_failure(None, b"", message="ReadTimeout"))
    assert "HTTP 504" in str(decide_submit_failure(504, GATEWAY_PAGE, message="x"))


@pytest.mark.parametrize("status", [None, 404, 410, 429, 500, 503])
def test_decide_read_failure_retries_what_may_heal(status: int | None) -> None:
    assert decide_read_failure(status) is None


def test_decide_read_failure_ends_a_403_at_once_with_its_hint() -> None:
    outcome = decide_read_failure(403)
    assert outcome is not None
    assert (outcome.state, outcome.hint) == (JobState.FAILED, HINT_READ_FORBIDDEN)
    assert outcome.error is not None and "403" in outcome.error.message


SUBMITTED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
REQUEST = SubmittedRequest("POST", "/v1/customer", SUBMITTED)


def state(**fields: object) -> dict[str, object]:
    return {
        "id": "5b0c2f7e-93d4-4c2e-9f1a-0e6b1c7d2a10",
        "status": "Finished",
        "statusCode": 201,
        "receivedUtc": "2026-12-02T09:00:00.250Z",
        "originalUri": "https://api.finance.visma.net/v1/customer",
        **fields,
    }


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (REQUEST, {}),
        (REQUEST, {"originalUri": "https://api.finance.visma.net/v1/Customer/"}),
        (  # an older base layout in front of the same path
            SubmittedRequest("POST", "/api/v1/customer", SUBMITTED),
            {"originalUri": "https://integration.visma.net/API/controller/api/v1/customer"},
        ),
        (
            SubmittedRequest("PUT", "/v1/customer/b64(Oi8_I1tdQCYqKzs)?x=1&y=2", SUBMITTED),
            {
                "originalUri": "https://api.finance.visma.net/v1/customer/b64(Oi8_I1tdQCYqKzs)?y=2&x=1"
            },
        ),
        (REQUEST, {"method": "post"}),
        (REQUEST, {"receivedUtc": "2026-12-02T08:56:00Z"}),  # Visma's clock a little behind
        (REQUEST, {"receivedUtc": None}),
    ],
)
def test_decide_adoption_takes_a_state_that_describes_the_request(
    request_: SubmittedRequest, fields: dict[str, object]
) -> None:
    assert decide_adoption(request_, parse_background_state(state(**fields))) is None


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"originalUri": "https://api.finance.visma.net/v1/salesorder"}, "/v1/salesorder"),
        ({"originalUri": "https://api.finance.visma.net/v1/customer?x=1"}, "query"),
        ({"originalUri": None}, "no originalUri"),
        ({"method": "DELETE"}, "DELETE"),
        ({"receivedUtc": "2026-12-02T08:40:00Z"}, "before the job was submitted"),
    ],
)
def test_decide_adoption_refuses_a_state_of_another_request(
    fields: dict[str, object], why: str
) -> None:
    reason = decide_adoption(REQUEST, parse_background_state(state(**fields)))
    assert reason is not None and why in reason


def test_decide_adoption_allows_for_clock_skew_only_so_far() -> None:
    late = SubmittedRequest("POST", "/v1/customer", SUBMITTED + timedelta(minutes=6))
    assert decide_adoption(late, parse_background_state(state())) is not None
