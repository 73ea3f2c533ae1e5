"""The functional core on plain values: no database, no HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain import (
    InvalidInput,
    JobState,
    background_header,
    can_move,
    decide_outcome,
    decide_rejection,
    decode_id,
    encode_id,
    job_id_from_headers,
    needs_content,
    parse_background_state,
    parse_delivery_query,
    parse_job_query,
    read_background_body,
    validate_method,
    validate_path,
    validate_tags,
)
from service.domain.deliveries import (
    PROBLEM_BAD_ID,
    PROBLEM_NOT_JSON,
    PROBLEM_NOT_OBJECT,
    PROBLEM_UNKNOWN_SHAPE,
)
from service.domain.jsontext import parse_json
from service.domain.visma_errors import (
    HINT_FORBIDDEN,
    HINT_NO_LICENSE,
    HINT_SUBACCOUNT,
    HINT_TIMECARDS,
    parse_error,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_json(name: str) -> dict[str, object]:
    return json.loads((FIXTURES / name).read_text())


# --- state machine ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (JobState.SUBMITTED, JobState.ACCEPTED, True),
        (JobState.SUBMITTED, JobState.SUCCEEDED, True),  # webhook beat the 202
        (JobState.ACCEPTED, JobState.FAILED, True),
        (JobState.ACCEPTED, JobState.SUBMITTED, False),
        (JobState.ACCEPTED, JobState.ACCEPTED, False),
        (JobState.SUCCEEDED, JobState.FAILED, False),
        (JobState.FAILED, JobState.SUCCEEDED, False),
        (JobState.SUCCEEDED, JobState.ACCEPTED, False),
        (JobState.REJECTED, JobState.ACCEPTED, False),
    ],
)
def test_can_move_only_forward(current: JobState, target: JobState, allowed: bool) -> None:
    assert can_move(current, target) is allowed


def test_decide_outcome_success_records_created_id() -> None:
    state = parse_background_state(fixture_json("state-finished-201.json"))
    outcome = decide_outcome(state)
    assert outcome is not None
    assert outcome.state == JobState.SUCCEEDED
    assert outcome.http_status == 201
    assert outcome.created_resource_id == "20417"
    assert outcome.error is None


def test_decide_outcome_finished_400_is_a_failure_with_the_message_and_hint() -> None:
    state = parse_background_state(fixture_json("state-finished-400.json"))
    assert needs_content(state)
    content = (FIXTURES / "content-message.json").read_bytes()
    outcome = decide_outcome(state, content)
    assert outcome is not None
    assert outcome.state == JobState.FAILED
    assert outcome.http_status == 400
    assert outcome.error is not None
    assert outcome.error.message == "Invoice can't be released because it is already released."
    assert outcome.hint is not None and "already released" in outcome.hint


def test_decide_outcome_fault_12027_gets_the_licence_hint() -> None:
    state = parse_background_state({**fixture_json("state-finished-400.json")})
    content = (FIXTURES / "content-ipp-exception.json").read_bytes()
    outcome = decide_outcome(state, content)
    assert outcome is not None and outcome.error is not None
    assert outcome.error.fault_code == "12027"
    assert outcome.error.type == "IPPException"
    assert outcome.error.message_id is not None and outcome.error.message_id.startswith("12027_")
    assert outcome.hint == HINT_NO_LICENSE


def test_decide_outcome_started_is_not_an_outcome() -> None:
    state = parse_background_state(fixture_json("state-started.json"))
    assert decide_outcome(state) is None
    assert not needs_content(state)


def test_decide_outcome_action_202_succeeds_with_a_note() -> None:
    state = parse_background_state({"id": "x", "status": "Finished", "statusCode": 202})
    outcome = decide_outcome(state)
    assert outcome is not None
    assert outcome.state == JobState.SUCCEEDED
    assert outcome.note is not None and "202" in outcome.note


def test_decide_outcome_status_failed_uses_error_message() -> None:
    state = parse_background_state(
        {"ID": "x", "Status": "Failed", "StatusCode": 0, "ErrorMessage": "Server crashed"}
    )
    outcome = decide_outcome(state)
    assert outcome is not None and outcome.error is not None
    assert outcome.state == JobState.FAILED
    assert outcome.error.message == "Server crashed"


def test_decide_rejection_parses_plain_text() -> None:
    outcome = decide_rejection(403, b"Forbidden")
    assert outcome.state == JobState.REJECTED
    assert outcome.error is not None and outcome.error.message == "Forbidden"
    assert outcome.hint == HINT_FORBIDDEN


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        (
            "You cannot create timecards for the selected user. Please review the company tree.",
            HINT_TIMECARDS,
        ),
        ("The values 1-200 of Subaccount do not exist.", HINT_SUBACCOUNT),
    ],
)
def test_hints_for_known_messages(message: str, hint: str) -> None:
    outcome = decide_rejection(400, json.dumps({"message": message}).encode())
    assert outcome.hint == hint


@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 599)))
def test_parse_error_never_raises(content: bytes, status: int | None) -> None:
    error = parse_error(content, status_code=status)
    assert error.message


# --- correlation -------------------------------------------------------------------------------


def test_background_header_carries_job_id_and_tags() -> None:
    header = background_header("j-1", {"orderRef": "SO-1", "batch": "7"}, notify=True)
    assert header == "subscription:vh-job-id=j-1,orderRef=SO-1,batch=7"
    assert background_header("j-1", {"a": "b"}, notify=False) == "none"


@pytest.mark.parametrize(
    "tags",
    [
        {"bad key": "v"},
        {"k": "a,b"},
        {"k": "a=b"},
        {"k": ""},
        {"k": "with space"},
        {"k": 5},
        {"vh-job-id": "x"},
        {"X-VWD-Tenant-Id": "x"},
        {"Order": "1", "order": "2"},
        {f"k{i}": "v" for i in range(17)},
    ],
)
def test_validate_tags_refuses_what_would_break_the_header(tags: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        validate_tags(tags)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9:/._~-]{1,30}", fullmatch=True),
        max_size=5,
    )
)
def test_valid_tags_round_trip_through_the_header(tags: dict[str, str]) -> None:
    lowered = {k.lower() for k in tags}
    if len(lowered) != len(tags) or any(k.startswith(("vh-", "x-vwd-")) for k in lowered):
        return
    from service.domain.correlation import _RESERVED_NAMES

    if lowered & _RESERVED_NAMES:
        return
    clean = validate_tags(tags)
    header = background_header("job", clean, notify=True)
    pairs = dict(p.split("=", 1) for p in header.removeprefix("subscription:").split(","))
    assert pairs == {"vh-job-id": "job", **clean}


def test_job_id_from_headers_ignores_case() -> None:
    assert job_id_from_headers({"VH-Job-Id": " abc "}) == "abc"
    assert job_id_from_headers({"x-other": "1"}) is None


# --- delivery bodies ---------------------------------------------------------------------------


def test_read_background_body_of_the_example_delivery() -> None:
    raw = (FIXTURES / "delivery-background-response.http").read_bytes()
    body = raw.split(b"\n\n", 1)[1]
    notice, problem = read_background_body(body)
    assert problem is None and notice is not None
    assert notice.visma_job_id == "5b0c2f7e-93d4-4c2e-9f1a-0e6b1c7d2a10"


def test_read_background_body_is_case_blind_and_derives_the_id() -> None:
    notice, problem = read_background_body(
        b'{"StateLocation": "https://x/v1/background/abc", "ContentLocation": "https://x/c"}'
    )
    assert problem is None and notice is not None
    assert notice.visma_job_id == "abc"
    notice, _ = read_background_body(b'{"contentLocation": "https://x/v1/background/def/content"}')
    assert notice is not None and notice.visma_job_id == "def"


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"not json", PROBLEM_NOT_JSON), (b"[1]", PROBLEM_NOT_OBJECT), (b"{}", PROBLEM_UNKNOWN_SHAPE)],
)
def test_read_background_body_names_the_problem(body: bytes, problem: str) -> None:
    assert read_background_body(body) == (None, problem)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "abc", "amount": NaN}',
        b'{"id": "abc", "amount": -Infinity}',
        b'{"id": "abc", "list": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"id": "\xff"}',
    ],
)
def test_read_background_body_refuses_what_is_not_json(body: bytes) -> None:
    assert read_background_body(body) == (None, PROBLEM_NOT_JSON)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32-le"])
def test_read_background_body_reads_every_encoding_json_allows(encoding: str) -> None:
    notice, problem = read_background_body('{"id": "äbc"}'.encode(encoding))
    assert problem is None and notice is not None and notice.visma_job_id == "äbc"


@pytest.mark.parametrize("raw", ['{"a": 1}', b'{"a": 1}', bytearray(b'{"a": 1}')])
def test_parse_json_takes_what_json_loads_takes(raw: str | bytes | bytearray) -> None:
    assert parse_json(raw) == json.loads(raw) == {"a": 1}


def test_parse_json_refuses_a_text_with_a_byte_order_mark_as_json_loads_does() -> None:
    with pytest.raises(ValueError):
        parse_json('\ufeff{"a": 1}')


@pytest.mark.parametrize(
    "visma_id", ["a\x00b", "tab\there", "del\x7f", "lone \ud800 surrogate", "x" * 65]
)
def test_read_background_body_refuses_ids_visma_would_not_give(visma_id: str) -> None:
    assert read_background_body(json.dumps({"id": visma_id}).encode()) == (None, PROBLEM_BAD_ID)


# --- ids, paths, listing -----------------------------------------------------------------------


def test_b64_ids_follow_visma_example() -> None:
    assert decode_id("b64(Oi8_I1tdQCYqKzs)") == ":/?#[]@&*+;"
    assert encode_id(":/?#[]@&*+;") == "b64(Oi8_I1tdQCYqKzs)"
    assert decode_id("plain") == "plain"


@pytest.mark.parametrize("value", ["b64()", "b64(!!)", "b64(a/b+)", "b64(_w)"])
def test_bad_b64_is_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput):
        decode_id(value)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_b64_round_trip(value: str) -> None:
    assert decode_id(encode_id(value)) == value


@pytest.mark.parametrize("value", ["a\x00b", "tab\there", "\x7f"])
def test_ids_with_control_characters_are_invalid(value: str) -> None:
    for form in (value, encode_id(value)):
        with pytest.raises(InvalidInput):
            decode_id(form)


@pytest.mark.parametrize(
    "path",
    [
        "v1/customer",
        "/v3/customer",
        "https://x/v1/customer",
        "/v1/a b",
        "/v1/../v2/x",
        "/v1/background/123",
        "/v1/",
    ],
)
def test_validate_path_refuses(path: str) -> None:
    with pytest.raises(InvalidInput):
        validate_path(path)


def test_validate_path_and_method_accept_visma_paths() -> None:
    assert validate_path("/v1/customer") == "/v1/customer"
    assert validate_path("/api/v2/salesorder?x=1") == "/api/v2/salesorder?x=1"
    assert validate_method("post") == "POST"
    with pytest.raises(InvalidInput):
        validate_method("TRACE")


def test_parse_job_query_caps_page_size_and_reads_filters() -> None:
    job_filter, page = parse_job_query(
        [
            ("pageSize", "100000"),
            ("pageNumber", "3"),
            ("state", "failed,expired"),
            ("tag.orderRef", "SO-1"),
            ("lastModifiedDateTime", "2026-01-01T00:00:00Z"),
            ("lastModifiedDateTimeCondition", ">"),
        ]
    )
    assert page.size == 500 and page.number == 3 and page.offset == 1000
    assert job_filter.states == ("failed", "expired")
    assert job_filter.tags == {"orderRef": "SO-1"}
    assert job_filter.last_modified is not None and job_filter.last_modified.op == ">"


@pytest.mark.parametrize(
    "pairs",
    [
        [("pageSize", "0")],
        [("pageSize", "-1")],
        [("pageNumber", "x")],
        [("state", "done")],
        [("lastModifiedDateTime", "yesterday")],
        [("lastModifiedDateTime", "2026-01-01"), ("lastModifiedDateTimeCondition", "==")],
        [("createdDateTimeCondition", ">")],
        [("colour", "red")],
        [("state", "failed"), ("state", "expired")],
    ],
)
def test_parse_job_query_refuses_bad_values(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        parse_job_query(pairs)


def test_parse_delivery_query() -> None:
    delivery_filter, _ = parse_delivery_query([("matched", "false"), ("kind", "visma")])
    assert delivery_filter.matched is False and delivery_filter.kind == "visma"
    for bad in ([("matched", "maybe")], [("kind", "email")]):
        with pytest.raises(InvalidInput):
            parse_delivery_query(bad)
