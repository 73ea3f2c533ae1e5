"""The imperative shell shared by the web handlers, the CLI and the workers.

Each flow opens its own short transactions: load through `store/`, decide through `domain/`,
write through `store/`. Visma is called with no transaction open.
"""

from service.flows.alert_outbox import (
    SLACK,
    OutboxSettings,
    SendResult,
    claim_deliveries,
    dispatch_due_alerts,
    next_due,
    record_send,
)
from service.flows.batch import BatchItem, ItemResult, submit_batch
from service.flows.budgets import record_budgets, restore_budgets
from service.flows.bulk import (
    OperationRun,
    cancel_operation,
    preview_resend,
    run_next_operation,
    start_replay,
    start_resend,
)
from service.flows.callbacks import CALLBACK, CallbackTarget, check_callback
from service.flows.clock import utcnow
from service.flows.diagnostics import (
    SignatureFailures,
    SignatureWatch,
    record_bad_signatures,
    signature_failures,
)
from service.flows.forwards import (
    FORWARD,
    GONE_FROM_INBOX,
    ForwardRequest,
    check_forward_target,
    forward_request,
    message_id,
    signing_key,
)
from service.flows.issues import change_issue, record_failure
from service.flows.lookup import find_job_id
from service.flows.replay import Replayed, replay_delivery, replay_since
from service.flows.resolve import ResolveSettings, read_and_apply, resolve_due_jobs
from service.flows.retention import (
    PURGED_TABLES,
    Purged,
    PurgeSettings,
    give_space_back,
    purge,
    purge_for_a_while,
)
from service.flows.status import StatusReceipt, record_status_delivery
from service.flows.submit import (
    SubmitSettings,
    Submitted,
    repeated_job,
    repeated_job_row,
    resend_job,
    submit_job,
    submit_once,
)

__all__ = [
    "OperationRun",
    "cancel_operation",
    "preview_resend",
    "run_next_operation",
    "start_replay",
    "start_resend",
    "change_issue",
    "record_failure",
    "FORWARD",
    "GONE_FROM_INBOX",
    "ForwardRequest",
    "check_forward_target",
    "forward_request",
    "message_id",
    "signing_key",
    "SignatureFailures",
    "SignatureWatch",
    "record_bad_signatures",
    "signature_failures",
    "CALLBACK",
    "CallbackTarget",
    "check_callback",
    "Replayed",
    "replay_delivery",
    "replay_since",
    "PURGED_TABLES",
    "Purged",
    "PurgeSettings",
    "give_space_back",
    "purge",
    "purge_for_a_while",
    "SLACK",
    "OutboxSettings",
    "ResolveSettings",
    "SendResult",
    "StatusReceipt",
    "SubmitSettings",
    "claim_deliveries",
    "dispatch_due_alerts",
    "find_job_id",
    "next_due",
    "read_and_apply",
    "record_send",
    "record_status_delivery",
    "resend_job",
    "resolve_due_jobs",
    "submit_job",
    "submit_once",
    "repeated_job",
    "repeated_job_row",
    "record_budgets",
    "restore_budgets",
    "Submitted",
    "submit_batch",
    "BatchItem",
    "ItemResult",
    "utcnow",
]
