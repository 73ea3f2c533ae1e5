"""Parsing JSON that came from outside: strict, and never an exception other than ValueError."""

from __future__ import annotations

import json
from typing import Any


def parse_json(raw: bytes | bytearray | str) -> Any:
    """`json.loads` that refuses NaN and Infinity (not JSON) and nesting too deep to parse.

    Every refusal is a ValueError, so callers answer "not JSON" instead of failing.
    """
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads does
    try:
        return _DECODER.decode(raw)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# One decoder for every call: `json.loads` with any option builds a new one (and its scanner)
# per call, which was most of the cost of reading a webhook body.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
