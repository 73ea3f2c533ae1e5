"""The HTTP layer: parse, call a flow or a store query, serialise. Nothing else.

`routes.py` wires every handler to its path; the app takes the table from `site_routes` and
puts the middleware around it, so the handlers themselves are not listed here.
"""

from service.web.errors import domain_error, http_error, server_error, storage_error
from service.web.fast_lane import FastLane, RequestErrorHandler
from service.web.request_id import RequestId
from service.web.routes import site_routes
from service.web.security_headers import SecurityHeaders
from service.web.sources import in_networks, parse_address
from service.web.state import State
from service.web.throttle import AuthThrottle
from service.web.traces import TracedWebhook, TraceRequests
from service.web.waiters import Waiters
from service.web.webhooks import receive_visma_webhook

__all__ = [
    "AuthThrottle",
    "FastLane",
    "RequestErrorHandler",
    "RequestId",
    "SecurityHeaders",
    "State",
    "TraceRequests",
    "TracedWebhook",
    "Waiters",
    "domain_error",
    "http_error",
    "in_networks",
    "parse_address",
    "receive_visma_webhook",
    "server_error",
    "site_routes",
    "storage_error",
]
