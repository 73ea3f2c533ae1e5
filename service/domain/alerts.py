"""Which transitions raise alerts, how noise is grouped, and what the alerts say.

An alert is raised once per transition, never per delivery. Two windows keep the noise down:

- flapping: a watched component that leaves `operational` alerts at once and opens a window. A
  change inside the window does not alert at once: one trailing alert is held until the window
  closes, and dropped again if the component is back where the last alert left it. So
  outage, operational, outage within the window is one alert; outage, operational is two (the
  recovery comes when the window closes).
- bursts: the first failed job of a fault code alerts at once and opens a window; further jobs
  with the same fault code inside it are counted into one `jobs.burst` alert sent when the
  window closes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from service.domain.jsontext import one_line_json
from service.domain.status import CLOSED_STATUSES, is_operational

MAX_GROUP_SUBJECTS = 100
"""A burst alert lists at most this many job ids; its count stays exact."""


class AlertKind(StrEnum):
    JOB_FAILED = "job.failed"
    JOB_EXPIRED = "job.expired"
    JOB_REJECTED = "job.rejected"
    JOBS_BURST = "jobs.burst"
    COMPONENT_STATUS = "component.status"
    INCIDENT_UPDATE = "incident.update"
    WEBHOOKS_SILENT = "webhooks.silent"
    WEBHOOKS_BAD_SIGNATURES = "webhooks.bad_signatures"
    ISSUE_OPENED = "issue.opened"
    ISSUE_REOPENED = "issue.reopened"
    EVENTS_FORWARD_FAILING = "events.forward_failing"


ALERT_KINDS = frozenset(k.value for k in AlertKind)
_JOB_ALERTS = {
    "failed": AlertKind.JOB_FAILED,
    "expired": AlertKind.JOB_EXPIRED,
    "rejected": AlertKind.JOB_REJECTED,
}


@dataclass(frozen=True)
class AlertPolicy:
    """The settings alert decisions depend on (ALERT_*_WINDOW_SECONDS, WATCH_COMPONENTS)."""

    flap_window_seconds: float = 300.0
    burst_window_seconds: float = 300.0
    watch_components: tuple[str, ...] = ()
    silent_after_jobs: int = 5
    """A company whose last this many jobs were resolved by polling raises `webhooks.silent`."""
    bad_signatures: int = 10
    bad_signatures_window_seconds: float = 300.0
    """This many failed signature checks within the window raise `webhooks.bad_signatures`."""
    default_tenant: str | None = None
    """The company of a job stored before jobs named theirs (the first of VISMA_TENANT_ID)."""
    job_failures: bool = True
    """Alert on each failed, expired or rejected job (ALERT_JOB_FAILURES); issue alerts come
    either way."""

    def watches(self, refs: Sequence[tuple[str, str | None]]) -> bool:
        """Whether any of these (id, name) components is watched; an empty watch list: all."""
        if not self.watch_components:
            return True
        watched = {w.strip().casefold() for w in self.watch_components}
        return any(
            component_id.casefold() in watched or (name is not None and name.casefold() in watched)
            for component_id, name in refs
        )


@dataclass(frozen=True)
class Window:
    """A noise window: open until `until`; `told` is the status the last sent alert gave."""

    until: datetime | None = None
    told: str | None = None
    count: int = 0
    subjects: tuple[str, ...] = ()
    held: bool = False
    """Whether a trailing alert is waiting for the window to close."""

    def is_open(self, at: datetime) -> bool:
        return self.until is not None and at < self.until


class FlapAction(StrEnum):
    NONE = "none"
    """Not a transition (e.g. degraded to major outage): no alert of its own."""
    RAISE = "raise"
    """Alert now and open a window."""
    HOLD = "hold"
    """Inside a window: the one trailing alert (created or kept) now says this status."""
    DROP = "drop"
    """Inside a window, back where the last alert left it: the trailing alert is dropped."""


@dataclass(frozen=True)
class FlapDecision:
    action: FlapAction
    window: Window


def decide_flap(
    window: Window,
    *,
    previous: str | None,
    new: str,
    at: datetime,
    window_seconds: float,
) -> FlapDecision:
    """What a component's move from `previous` to `new` at `at` raises."""
    if is_operational(previous) == is_operational(new):
        # Still down (or still up): a trailing alert, if one waits, shows the latest status.
        action = FlapAction.HOLD if window.held and window.is_open(at) else FlapAction.NONE
        return FlapDecision(action, window)
    if window_seconds <= 0 or not window.is_open(at):
        opened = Window(until=at + timedelta(seconds=window_seconds), told=new, count=1)
        return FlapDecision(FlapAction.RAISE, opened)
    if is_operational(new) == is_operational(window.told):
        return FlapDecision(FlapAction.DROP, replace(window, count=window.count + 1, held=False))
    return FlapDecision(FlapAction.HOLD, replace(window, count=window.count + 1, held=True))


class BurstAction(StrEnum):
    SINGLE = "single"
    """Alert on this job alone and open a window for its fault code."""
    GROUP = "group"
    """Count this job into the window's one burst alert."""


@dataclass(frozen=True)
class BurstDecision:
    action: BurstAction
    window: Window


def decide_burst(
    window: Window, *, subject: str, at: datetime, window_seconds: float
) -> BurstDecision:
    """Whether a failed job at `at` alerts alone or joins the burst of its window."""
    if window_seconds <= 0 or not window.is_open(at):
        opened = Window(until=at + timedelta(seconds=window_seconds), count=1, subjects=(subject,))
        return BurstDecision(BurstAction.SINGLE, opened)
    subjects = window.subjects
    if len(subjects) < MAX_GROUP_SUBJECTS:
        subjects = (*subjects, subject)
    grouped = replace(window, count=window.count + 1, subjects=subjects, held=True)
    return BurstDecision(BurstAction.GROUP, grouped)


def job_alert_kind(state: str) -> AlertKind | None:
    """The alert a job raises on reaching `state`, if any."""
    return _JOB_ALERTS.get(state)


def burst_key(*, state: str, fault_code: str | None, http_status: int | None) -> str:
    """What makes job failures "the same fault": the fault code; without one, the state with
    its HTTP status (a job Visma refused at once and one that failed while running are not
    the same fault, whatever their status)."""
    if fault_code:
        return f"faultCode={fault_code}"
    if state == "expired" or http_status is None:
        return f"state={state}"
    return f"{state}:httpStatus={http_status}"


def component_window_key(component_id: str) -> str:
    return f"component:{component_id}"


def burst_window_key(key: str) -> str:
    return f"jobs:{key}"


# Summaries: one line a person can read.


def job_summary(
    kind: AlertKind, *, method: str, path: str, error: str | None, fault_code: str | None
) -> str:
    """`Job failed: POST /v1/salesorder: No license for this company. (fault 12027)`."""
    what = {
        AlertKind.JOB_FAILED: "Job failed",
        AlertKind.JOB_EXPIRED: "Job expired",
        AlertKind.JOB_REJECTED: "Job rejected by Visma",
    }[kind]
    reason = error or (
        "Visma no longer knows it; the outcome is unknown" if kind is AlertKind.JOB_EXPIRED else ""
    )
    fault = f" (fault {fault_code})" if fault_code else ""
    return f"{what}: {method} {path}" + (f": {reason}{fault}" if reason else fault)


def burst_summary(key: str, *, count: int, window_seconds: float) -> str:
    """`7 jobs failed with fault code 12027 within 5 min`."""
    name, _, value = key.partition("=")
    state, _, name = name.rpartition(":")
    label = {
        "faultCode": f"failed with fault code {value}",
        "httpStatus": f"{'were rejected' if state == 'rejected' else 'failed'} with HTTP {value}",
        "state": "expired" if value == "expired" else f"ended {value}",
    }.get(name, f"failed ({key})")
    return f"{count} jobs {label} within {_duration(window_seconds)}"


def component_summary(
    name: str, *, previous: str | None, new: str, changes: int = 1, window_seconds: float = 0
) -> str:
    """`Visma.net ERP API: operational -> partial outage`, with the flap count when grouped."""
    if is_operational(new):
        text = f"{name} is operational again" + (f" (was {_words(previous)})" if previous else "")
    else:
        text = f"{name}: {_words(previous or 'operational')} -> {_words(new)}"
    if changes > 1:
        text += f"; changed {changes} times within {_duration(window_seconds)}"
    return text


def incident_summary(
    name: str,
    *,
    previous: str | None,
    status: str,
    maintenance: bool,
    impact: str | None = None,
    scheduled_for: datetime | None = None,
) -> str:
    """`Incident opened: Slow background API (investigating, minor impact)` and the like."""
    noun = "Maintenance" if maintenance else "Incident"
    if status in CLOSED_STATUSES:
        verb = "completed" if maintenance else "resolved"
        return f"{noun} {verb}: {name}" + (f" ({_words(status)})" if status != verb else "")
    if maintenance and status == "scheduled":
        when = f" for {scheduled_for:%Y-%m-%d %H:%M} UTC" if scheduled_for else ""
        return f"Maintenance scheduled{when}: {name}"
    if previous is None:
        extra = f", {impact} impact" if impact and impact not in ("none", "maintenance") else ""
        return f"{noun} opened: {name} ({_words(status)}{extra})"
    return f"{noun} update: {name}: {_words(status)} (was {_words(previous)})"


def _words(status: str | None) -> str:
    return (status or "unknown").replace("_", " ")


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


# Slack: the alert as an incoming-webhook message (`text`, plus `blocks` for the detail).
#
# Slack reads `&`, `<` and `>` as control characters in `text` and in mrkdwn blocks alike:
# `<!channel>` notifies a whole channel, `<https://x|y>` is a link. Everything that came from
# outside (Visma's errors, the status page's names and bodies, a job's path and tags) is
# escaped wherever it goes, and texts are cut to Slack's limits between whole entities.

SLACK_TEXT_LIMIT = 3000
"""Slack refuses a section whose text is longer; `text` and the context are held to it too."""
_ELLIPSIS = "…"


def slack_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack incoming-webhook payload for an alert's JSON body."""
    summary = slack_escape(str(alert.get("summary") or alert.get("kind") or "alert"))
    text = "\n".join([f"*{summary}*", *_detail_lines(alert)])
    context = slack_escape(f"{alert.get('kind')} · {alert.get('at')} · alert {alert.get('id')}")
    return {
        "text": slack_cut(summary, SLACK_TEXT_LIMIT),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": slack_cut(text, SLACK_TEXT_LIMIT)},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": slack_cut(context, SLACK_TEXT_LIMIT)}],
            },
        ],
    }


def slack_escape(text: str) -> str:
    """Outside text made literal for Slack: its three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_cut(text: str, limit: int) -> str:
    """Escaped `text` held to `limit` characters, with an ellipsis: cut before an entity or a
    link it would split, never inside one (half an `&amp;` shows as text, half a link breaks)."""
    if len(text) <= limit:
        return text
    head = text[: limit - len(_ELLIPSIS)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    # Outside text has no `<` left after escaping: one here opens a link of ours.
    link = head.rfind("<")
    if link != -1 and ">" not in head[link:]:
        head = head[:link]
    return head + _ELLIPSIS


def _detail_lines(alert: Mapping[str, Any]) -> list[str]:
    esc = _escaped
    lines: list[str] = []
    jobs = _dict(alert.get("jobs"))
    if jobs:
        ids = [str(i) for i in jobs.get("ids") or []]
        shown = ", ".join(f"`{esc(i)}`" for i in ids[:10])
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        lines.append(f"*Jobs:* {esc(jobs.get('count'))}: {shown}{more}")
    job = _dict(alert.get("job"))
    if job:
        lines.append(
            f"*Job:* `{esc(job.get('id'))}` {esc(job.get('method'))} {esc(job.get('path'))}"
        )
        if job.get("tenant"):
            lines.append(f"*Company:* {esc(job['tenant'])}")
        tags = _dict(job.get("tags"))
        if tags:
            pairs = ", ".join(f"{k}={v}" for k, v in tags.items())
            lines.append(f"*Tags:* {esc(pairs)}")
        error = _dict(job.get("error"))
        if error:
            fault = f" (fault {esc(error['faultCode'])})" if error.get("faultCode") else ""
            lines.append(f"*Error:* {esc(error.get('message'))}{fault}")
        if job.get("hint"):
            lines.append(f"*Hint:* {esc(job['hint'])}")
    issue = _dict(alert.get("issue"))
    if issue:
        lines.append(
            f"*Issue:* `{esc(issue.get('id'))}`: {esc(issue.get('jobCount'))} job(s) so far"
        )
        if issue.get("message"):
            lines.append(f"*Error:* {esc(issue['message'])}")
        if issue.get("hint"):
            lines.append(f"*Hint:* {esc(issue['hint'])}")
        during = _dict(issue.get("incident"))
        if during:
            link = _slack_link(during.get("shortlink"))
            name = esc(during.get("name") or during.get("id"))
            title = f"<{link}|{name}>" if link else name
            lines.append(f"*During incident:* {title}: {esc(_words(during.get('status')))}")
    component = _dict(alert.get("component"))
    if component:
        status = esc(_words(component.get("status")))
        lines.append(f"*Component:* {esc(component.get('name'))} is {status}")
    incident = _dict(alert.get("incident"))
    if incident:
        name = esc(incident.get("name"))
        link = _slack_link(incident.get("shortlink"))
        title = f"<{link}|{name}>" if link else name
        lines.append(f"*Incident:* {title}: {esc(_words(incident.get('status')))}")
        names = [str(c.get("name") or c.get("id")) for c in incident.get("components") or []]
        if names:
            lines.append(f"*Components:* {esc(', '.join(names))}")
        updates = incident.get("updates") or []
        if updates and updates[0].get("body"):
            lines.append(f"> {esc(updates[0]['body'])}")
    checks = alert.get("check")
    if isinstance(checks, list):
        lines.extend(f"*Check:* {esc(check)}" for check in checks[:5])
    return lines


def _escaped(value: object) -> str:
    # A nested value (never expected, but the body is JSON) is written without recursion, cut.
    if isinstance(value, dict | list):
        return slack_escape(one_line_json(value, max_chars=SLACK_TEXT_LIMIT))
    return slack_escape(str(value))


def _slack_link(value: object) -> str | None:
    """A status page's link as the target of a Slack link, or None if it is no web address."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return None
    # `|` ends a link's target in Slack: keep it inside, percent-encoded.
    return slack_escape(value.replace("|", "%7C"))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# Sending: what an attempt's answer means, and when to try again.


class SendOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    """Given up after the last attempt."""
    GONE = "gone"
    """The target answered 410 Gone: Standard Webhooks says stop, so it gets no more tries."""


def send_outcome(status_code: int | None, *, attempts: int, max_attempts: int) -> SendOutcome:
    """A 2xx is delivered and a 410 ends the delivery; anything else (a 3xx too: we never follow
    redirects) is retried."""
    if status_code is not None and 200 <= status_code < 300:
        return SendOutcome.SENT
    if status_code == 410:
        return SendOutcome.GONE
    return SendOutcome.RETRY if attempts < max_attempts else SendOutcome.FAILED


def retry_delay(
    attempts: int, *, base_seconds: float, max_seconds: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after `attempts` failed tries: doubling from `base_seconds`, capped;
    never sooner than the target's Retry-After."""
    delay: float = min(base_seconds * 2.0 ** min(max(attempts - 1, 0), 30), max_seconds)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_seconds))
    return delay


def redact_url(url: str) -> str:
    """A target without the parts that hold secrets (a Slack URL's path is its token): what
    the API and every log line show of an outbound URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{parts.scheme}://{host}/...#{digest}"
