"""`visma-hooks demo` and `simulate`: the Visma.net simulator, and the demo run against it."""

from __future__ import annotations

import argparse
import asyncio
import math

from service.cli.support import Command
from service.cli.support import load_settings as _settings
from service.terminal import print_error


def add_commands(command: Command) -> None:
    """`demo` and `simulate`, added to the CLI's parser by its `command` factory."""
    demo = command("demo", "rehearse Visma's outcomes and failure modes against the simulator")
    demo.add_argument(
        "--timeout", type=float, default=30.0, help="seconds every job has to reach its end"
    )
    demo.set_defaults(run=_demo)

    simulate = command("simulate", "run the Visma.net simulator")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--port", type=int, default=8090, help="port to listen on")
    simulate.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/visma",
        help="where the simulated dispatcher delivers webhooks",
    )
    simulate.add_argument(
        "--webhook-secret", default=None, help="default: first of VISMA_WEBHOOK_SECRETS"
    )
    chaos = simulate.add_argument_group(
        "chaos", "Visma failure modes to rehearse (default none; change live: PUT /_sim/chaos)"
    )
    chaos.add_argument("--seed", type=int, help="seed every chaos decision: reproducible runs")
    chaos.add_argument(
        "--drop-webhooks", type=_share, metavar="SHARE", help="share of webhooks never sent"
    )
    chaos.add_argument(
        "--delay-webhooks", type=_seconds, metavar="SECONDS", help="hold each webhook this long"
    )
    chaos.add_argument(
        "--delay-jitter", type=_seconds, metavar="SECONDS", help="plus up to this long at random"
    )
    chaos.add_argument(
        "--duplicate-webhooks", type=_share, metavar="SHARE", help="share of webhooks sent twice"
    )
    chaos.add_argument(
        "--reorder-window",
        type=_seconds,
        metavar="SECONDS",
        help="hold webhooks up to this long and release them shuffled",
    )
    chaos.add_argument(
        "--rate-limit-share", type=_share, metavar="SHARE", help="share of API requests given 429"
    )
    chaos.add_argument(
        "--rate-limit", type=_rate, metavar="RPS", help="API requests per second before 429"
    )
    chaos.add_argument(
        "--rate-budget",
        type=_count,
        metavar="N",
        help="API requests per company per budget window before 429 (Visma's hourly budget)",
    )
    chaos.add_argument(
        "--rate-budget-window",
        type=_rate,
        metavar="SECONDS",
        help="the budget's window (default 3600; shorter to rehearse an hour in minutes)",
    )
    chaos.add_argument(
        "--server-error-share", type=_share, metavar="SHARE", help="share of API requests given 503"
    )
    chaos.add_argument(
        "--forget-after",
        type=_seconds,
        metavar="SECONDS",
        help="forget jobs this long after receipt: state 404, content 410",
    )
    chaos.add_argument(
        "--forgotten-state-status",
        type=int,
        choices=(404, 410),
        help="what the state of a forgotten job answers (default 404)",
    )
    chaos.add_argument(
        "--drop-accepts",
        type=_share,
        metavar="SHARE",
        help="share of background calls that run but whose 202 is lost",
    )
    simulate.add_argument(
        "--status-webhook-url",
        default=None,
        help="where the simulated status page sends its webhooks; default: this machine's "
        "/webhooks/status/<STATUS_WEBHOOK_TOKEN> on port 8000 when the token is set",
    )
    simulate.add_argument(
        "--send-event",
        action="append",
        metavar="EVENT_ID[:TENANT]",
        help="ask the simulator running at --host/--port to send this entity event (for the "
        "company TENANT, default its first), signed like every delivery, and exit; repeatable. "
        "The bodies are illustrative: Visma publishes no schema for them",
    )
    simulate.set_defaults(run=_simulate)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from service.demo import run_demo

    return 0 if asyncio.run(run_demo(Console(), timeout=args.timeout)) else 1


# `simulate` flag (argparse dest) -> SimulatorConfig chaos field.
_CHAOS_FLAGS = {
    "seed": "seed",
    "drop_webhooks": "webhook_drop_share",
    "delay_webhooks": "webhook_delay_seconds",
    "delay_jitter": "webhook_delay_jitter_seconds",
    "duplicate_webhooks": "webhook_duplicate_share",
    "reorder_window": "webhook_reorder_window_seconds",
    "rate_limit_share": "rate_limit_share",
    "rate_limit": "rate_limit_per_second",
    "rate_budget": "rate_budget",
    "rate_budget_window": "rate_budget_window_seconds",
    "server_error_share": "server_error_share",
    "forget_after": "forget_after_seconds",
    "forgotten_state_status": "forgotten_state_status",
    "drop_accepts": "accept_drop_share",
}


def _number(text: str) -> float:
    value = float(text)  # argparse turns the ValueError into "invalid ... value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share is from 0 to 1, not {text}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seconds must not be negative, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count must not be negative, not {text}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a rate must be above 0, not {text}")
    return value


def _send_events(args: argparse.Namespace) -> int:
    """`simulate --send-event`: each event sent by the running simulator's dispatcher."""
    import httpx
    from rich.console import Console

    console = Console()
    base = f"http://{args.host}:{args.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        for spec in args.send_event:
            event_id, _sep, tenant = spec.partition(":")
            payload = {"eventId": event_id.strip()}
            if tenant.strip():
                payload["tenant"] = tenant.strip()
            try:
                response = client.post("/_sim/events", json=payload)
            except httpx.HTTPError as exc:
                print_error(f"no simulator answers at {base} (start `visma-hooks simulate`): {exc}")
                return 1
            if response.status_code != 202:
                print_error(f"the simulator refused {spec!r}: {response.text[:300]}")
                return 2
            sent = response.json()
            console.print(
                f"sent {sent['eventId']} for {sent['tenant']} "
                f"(notification {sent['notificationId']})",
                markup=False,
                soft_wrap=True,  # the id stays whole, for a script to read
            )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn
    from rich.console import Console

    from service.simulator import SimulatorConfig, create_simulator_app

    if args.send_event:
        return _send_events(args)

    settings = _settings()
    secret = args.webhook_secret or next(iter(settings.webhook_secrets()), None)
    chaos = {
        field: getattr(args, flag)
        for flag, field in _CHAOS_FLAGS.items()
        if getattr(args, flag) is not None
    }
    token = settings.STATUS_WEBHOOK_TOKEN.get_secret_value()
    status_url = args.status_webhook_url or (
        f"http://127.0.0.1:8000/webhooks/status/{token}" if token else None
    )
    config = SimulatorConfig(
        webhook_url=args.webhook_url or None, status_webhook_url=status_url, **chaos
    )
    if secret:
        config.webhook_secret = secret
    if settings.VISMA_CLIENT_ID:
        config.client_id = settings.VISMA_CLIENT_ID
    if settings.VISMA_CLIENT_SECRET.get_secret_value():
        config.client_secret = settings.VISMA_CLIENT_SECRET.get_secret_value()
    if settings.tenant_ids:
        config.tenant_id, *config.other_tenant_ids = settings.tenant_ids
    Console().print(
        f"simulating Visma.net on http://{args.host}:{args.port} "
        f"(client {config.client_id}, tenants {', '.join(config.tenants)}); "
        f"webhooks go to {config.webhook_url}"
    )
    if chaos:
        Console().print("chaos: " + ", ".join(f"{name}={value}" for name, value in chaos.items()))
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, access_log=False)
    return 0
