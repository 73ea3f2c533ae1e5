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


# Rendering JSON for people (the dashboard, the CLI, Slack). `json.loads` and `json.dumps`
# recurse once per level, so a document nested deeper than the interpreter's stack (an outside
# delivery `[[[...]]]` 100,000 deep) raised RecursionError wherever it was shown. The depth is
# measured first without recursion; a document too deep or too long is shown as raw text, cut.

PRETTY_MAX_DEPTH = 64
"""Nesting deeper than this is shown raw: no real body of Visma's or the status page's is."""
PRETTY_MAX_CHARS = 100_000
"""What is shown of one document at most; the rest is cut with `CUT_MARKER`."""
CUT_MARKER = "… (cut: {count} more characters)"
DEEP_CUT_MARKER = "… (cut: nested too deeply to show whole)"


def pretty_json(
    value: object, *, max_depth: int = PRETTY_MAX_DEPTH, max_chars: int = PRETTY_MAX_CHARS
) -> str:
    """JSON text or a parsed value indented for reading; anything that is not JSON, or nests
    deeper than `max_depth`, as its raw text. Never more than `max_chars` (plus the marker)."""
    return _rendered(value, indent=2, max_depth=max_depth, max_chars=max_chars)


def one_line_json(
    value: object, *, max_depth: int = PRETTY_MAX_DEPTH, max_chars: int = PRETTY_MAX_CHARS
) -> str:
    """`pretty_json` on one line (a terminal's field, a Slack line)."""
    return _rendered(value, indent=None, max_depth=max_depth, max_chars=max_chars)


def cut_text(text: str, max_chars: int) -> str:
    """`text` held to `max_chars`, the rest named by a marker."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + CUT_MARKER.format(count=len(text) - max_chars)


def _rendered(value: object, *, indent: int | None, max_depth: int, max_chars: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        # Parse only what can be shown whole and is shallow enough to parse safely.
        if len(value) > max_chars or text_depth(value) > max_depth:
            return cut_text(value, max_chars)
        text = value
        try:
            value = parse_json(text)
        except ValueError:
            return cut_text(text, max_chars)
        if not isinstance(value, dict | list):
            return cut_text(json.dumps(value, ensure_ascii=False), max_chars)
    elif not isinstance(value, dict | list):
        return cut_text(str(value), max_chars)
    if value_depth(value) > max_depth:
        flat, whole = _flat(value, max_chars)
        return cut_text(flat, max_chars) if whole else flat[:max_chars] + DEEP_CUT_MARKER
    separators = (",", ": ") if indent is not None else (", ", ": ")
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators, default=str)
    return cut_text(text, max_chars)


def text_depth(text: str) -> int:
    """How deep JSON text nests (brackets outside strings), counted without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def value_depth(value: object) -> int:
    """How deep a parsed value nests (a scalar is 0), counted without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _flat(value: object, max_chars: int) -> tuple[str, bool]:
    """Compact JSON of a value too deep for `json.dumps`, written with a stack of its own and
    stopped a little past `max_chars` (the caller cuts), and whether it is whole."""
    parts: list[str] = []
    size = 0
    # Each entry is a piece of text to write or a value to open.
    stack: list[tuple[bool, object]] = [(False, value)]
    while stack and size <= max_chars:
        is_text, item = stack.pop()
        if is_text:
            piece = str(item)
        elif isinstance(item, dict):
            piece = "{"
            pending: list[tuple[bool, object]] = []
            for index, (key, child) in enumerate(item.items()):
                prefix = ", " if index else ""
                pending.append((True, f"{prefix}{json.dumps(str(key), ensure_ascii=False)}: "))
                pending.append((False, child))
            pending.append((True, "}"))
            stack.extend(reversed(pending))
        elif isinstance(item, list | tuple):
            piece = "["
            pending = []
            for index, child in enumerate(item):
                if index:
                    pending.append((True, ", "))
                pending.append((False, child))
            pending.append((True, "]"))
            stack.extend(reversed(pending))
        else:
            try:
                piece = json.dumps(item, ensure_ascii=False)
            except (TypeError, ValueError):
                piece = json.dumps(str(item), ensure_ascii=False)
        parts.append(piece)
        size += len(piece)
    return "".join(parts), not stack
