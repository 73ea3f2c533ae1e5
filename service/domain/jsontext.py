"""Parsing JSON that came from outside: strict, and never an exception other than ValueError."""

from __future__ import annotations

import json
from typing import Any


def parse_json(raw: bytes | str) -> Any:
    """`json.loads` that refuses NaN and Infinity (not JSON) and nesting too deep to parse.

    Every refusal is a ValueError, so callers answer "not JSON" instead of failing.
    """
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
