"""Visma error bodies parsed into one shape, with troubleshooting hints for the known cases."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from service.domain.jsontext import parse_json

MAX_ERROR_BODY_CHARS = 4000

HINT_NO_LICENSE = (
    "The integration user lacks the API user role; or the tenant id used for the token is the "
    "customer contract's tenant instead of the company's (the company's TenantID is in Visma App "
    "Store); or the Financials licence has expired."
)
HINT_TIMECARDS = (
    "The token's user must sit above the employee in the company tree (workgroups, EP204060)."
)
HINT_SUBACCOUNT = (
    "Segment validation is on for SUBACCOUNT (CS202000): add the combination in Subaccounts "
    "(GL203000)."
)
HINT_NOT_SENT = (
    "Nothing reached Visma: check VISMA_API_URL, VISMA_TOKEN_URL and the network, then send "
    "it again with `visma-hooks submit --resend <job id>`."
)
HINT_BAD_REQUEST = "Visma refused the request as invalid: {message}"
HINT_READ_FORBIDDEN = (
    "Visma answered 403 when asked for this job: the credentials or company used to read it "
    "differ from the ones that submitted it (Visma tells a job only to the company and user "
    "that made it). Check VISMA_TENANT_ID and the integration user's roles; this does not "
    "heal by retrying."
)
HINT_FORBIDDEN = "Financials User/Administrator roles are missing for the integration user."
HINT_PRECONDITION_FAILED = (
    "The resource changed since its ETag was read (412 Precondition Failed): read it again and "
    "resubmit with the new ifMatch."
)


@dataclass(frozen=True)
class VismaErrorInfo:
    """An error as the job JSON shows it."""

    type: str | None
    message: str
    fault_code: str | None = None
    message_id: str | None = None
    body: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The `error` object of the job JSON."""
        data = asdict(self)
        return {
            "type": data["type"],
            "message": data["message"],
            "faultCode": data["fault_code"],
            "messageId": data["message_id"],
            "body": data["body"],
        }


def _lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def parse_error(
    content: bytes | None, *, status_code: int | None, error_message: str | None = None
) -> VismaErrorInfo:
    """One error out of whatever Visma returned: the IPPException shape, `message`, or text."""
    text = (content or b"").decode("utf-8", errors="replace").strip()
    body = text[:MAX_ERROR_BODY_CHARS] or None
    parsed: object = None
    if text:
        try:
            parsed = parse_json(text)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict):
        fields = _lower_keys(parsed)
        message = fields.get("exceptionmessage") or fields.get("message") or fields.get("error")
        if isinstance(message, dict):  # {"error": {"message": ...}} variants
            message = _lower_keys(message).get("message")
        fault = fields.get("exceptionfaultcode")
        return VismaErrorInfo(
            type=_str_or_none(fields.get("exceptiontype")),
            message=str(message) if message else (error_message or _status_text(status_code)),
            fault_code=_str_or_none(fault),
            message_id=_str_or_none(fields.get("exceptionmessageid")),
            body=body,
        )
    if isinstance(parsed, str) and parsed:
        return VismaErrorInfo(type=None, message=parsed, body=body)
    if text:
        return VismaErrorInfo(type=None, message=text[:500], body=body)
    return VismaErrorInfo(type=None, message=error_message or _status_text(status_code), body=None)


def is_visma_error(content: bytes | None) -> bool:
    """Whether `content` is Visma's own error JSON (an IPPException, or a `message` object),
    as opposed to, say, a gateway's HTML page."""
    try:
        parsed = parse_json(content or b"")
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    keys = _lower_keys(parsed)
    return any(key in keys for key in ("exceptiontype", "exceptionmessage", "message"))


def hint_for(error: VismaErrorInfo, *, status_code: int | None) -> str | None:
    """The troubleshooting hint for a known case, if one fits."""
    message = error.message.lower()
    if error.fault_code == "12027" or "no license for this company" in message:
        return HINT_NO_LICENSE
    if "cannot create timecards for the selected user" in message:
        return HINT_TIMECARDS
    if "of subaccount do not exist" in message:
        return HINT_SUBACCOUNT
    if status_code == 412:
        return HINT_PRECONDITION_FAILED
    if status_code in (401, 403):
        return HINT_FORBIDDEN
    if status_code == 400 and error.body:
        return HINT_BAD_REQUEST.format(message=error.message)
    return None


def _str_or_none(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _status_text(status_code: int | None) -> str:
    return f"Visma answered HTTP {status_code}" if status_code else "Visma reported a failure"
