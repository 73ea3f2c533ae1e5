"""A faithful Visma.net simulator: token endpoint, background ERP API, webhook dispatcher, and
the status page's webhooks (`app.state.simulator.statuspage`, or `POST /_sim/status/...`).

Teams rehearse Visma's failure modes with it; the tests, the demo and the benchmark run
against it. Script what happens with `app.state.simulator.script(Outcome(...))` or over
`POST /_sim/outcomes`; turn chaos (dropped, delayed, duplicated or reordered webhooks, 429s,
5xx, forgotten jobs, lost 202s) on and off with `SimulatorConfig` fields or `PUT /_sim/chaos`.
"""

from __future__ import annotations

from service.simulator.app import create_simulator_app
from service.simulator.chaos import Chaos, ChaosCounters, TokenBucket
from service.simulator.config import CHAOS_FIELDS, SimulatorConfig
from service.simulator.dispatcher import DeliveryAttempt, Notification, WebhookDispatcher
from service.simulator.jobs import (
    BACKGROUND_HEADER,
    BackgroundHeaderError,
    BackgroundJob,
    BackgroundRequest,
    parse_background_header,
)
from service.simulator.outcomes import JobResult, Outcome, OutcomeKind
from service.simulator.state import RequestRecord, SimulatorState
from service.simulator.statuspage import SimComponent, StatusDelivery, StatusPage

__all__ = [
    "BACKGROUND_HEADER",
    "CHAOS_FIELDS",
    "BackgroundHeaderError",
    "BackgroundJob",
    "BackgroundRequest",
    "Chaos",
    "ChaosCounters",
    "DeliveryAttempt",
    "JobResult",
    "Notification",
    "Outcome",
    "OutcomeKind",
    "RequestRecord",
    "SimulatorConfig",
    "SimComponent",
    "SimulatorState",
    "StatusDelivery",
    "StatusPage",
    "TokenBucket",
    "WebhookDispatcher",
    "create_simulator_app",
    "parse_background_header",
]
