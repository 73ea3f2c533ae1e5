"""Background workers; each claims its work so that replicas never do it twice."""

from service.workers.alert_sender import AlertSender
from service.workers.housekeeping import HousekeepingWorker
from service.workers.operations import OperationWorker
from service.workers.resolver import ResolverWorker

__all__ = ["AlertSender", "HousekeepingWorker", "OperationWorker", "ResolverWorker"]
