"""Entity events the simulated dispatcher can send, beside `BACKGROUND_API_RESPONSE`.

Visma's "events and entities" documentation lists the events of the Financial, Sales Order
and Journal Transaction publishers (a customer created or updated, an AR invoice whose status
changed, ...) but publishes no schema for their bodies. The bodies here are ILLUSTRATIVE only:
a small JSON object naming the event, the entity and the company, enough for a receiver to
route and store. Nothing may rely on their shape; the service forwards a body as it came.
"""

from __future__ import annotations

import uuid
from typing import Any

from service.simulator.outcomes import dump_json

ENTITY_EVENTS = (
    "CUSTOMER_CREATED",
    "CUSTOMER_UPDATED",
    "SUPPLIER_CREATED",
    "ACCOUNT_UPDATED",
    "CUSTOMER_INVOICE_STATUS_CHANGED",
    "SUPPLIER_INVOICE_STATUS_CHANGED",
    "DIMENSION_UPDATED",
    "EMPLOYEE_UPDATED",
    "INVENTORY_ITEM_UPDATED",
    "SALES_ORDER_CREATED",
    "JOURNAL_TRANSACTION_RELEASED",
)
"""Event ids the simulator offers by name (illustrative: any id can be sent)."""
MAX_EVENT_ID_CHARS = 128


def entity_event_body(event_id: str, *, tenant_id: str, entity_id: str | None = None) -> bytes:
    """An illustrative body for `event_id` (see the module's docstring: not Visma's schema)."""
    payload: dict[str, Any] = {
        "eventId": event_id,
        "entityId": entity_id or str(uuid.uuid4()),
        "tenantId": tenant_id,
        "illustrative": True,
    }
    return dump_json(payload)
