"""Showing JSON to people: depth measured without recursion, too deep or too long shown raw and
cut; and the send lanes that keep one alert target from holding up another."""

from __future__ import annotations

import pytest

from service.domain.jsontext import (
    CUT_MARKER,
    DEEP_CUT_MARKER,
    one_line_json,
    pretty_json,
    text_depth,
    value_depth,
)
from service.workers.lanes import TargetLanes


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[["', 0),  # brackets in a string do not nest
        ('["a\\"[", {"b": [1]}]', 3),  # nor after an escaped quote
        ("[" * 100_000 + "]" * 100_000, 100_000),
    ],
)
def test_text_depth_counts_only_real_nesting(text: str, depth: int) -> None:
    assert text_depth(text) == depth


def test_pretty_json_indents_shallow_json_and_shows_the_rest_raw() -> None:
    assert pretty_json('{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert pretty_json(b'{"a": 1}') == '{\n  "a": 1\n}'
    assert pretty_json("not json {") == "not json {"
    assert pretty_json(None) == ""
    assert one_line_json({"a": [1, 2]}) == '{"a": [1, 2]}'


def test_too_deep_or_too_long_is_cut_with_a_marker() -> None:
    deep = "[" * 70 + "]" * 70
    assert pretty_json(deep, max_depth=64) == deep  # raw, whole: it is short
    assert pretty_json("x" * 50, max_chars=10) == "x" * 10 + CUT_MARKER.format(count=40)
    value: list[object] = []
    inner = value
    for _ in range(100_000):
        child: list[object] = []
        inner.append(child)
        inner = child
    assert value_depth(value) == 100_001
    assert pretty_json(value, max_chars=20) == "[" * 20 + DEEP_CUT_MARKER


def test_target_lanes_cap_each_target_and_all_together() -> None:
    lanes = TargetLanes(per_target=2, total=3)
    lanes.take("a")
    lanes.take("a")
    assert lanes.room("a") == 0 and lanes.full() == ["a"]
    assert lanes.room("b") == 1  # one left over all
    lanes.take("b")
    assert lanes.free == 0 and lanes.room("c") == 0
    with pytest.raises(RuntimeError):
        lanes.take("c")
    lanes.release("a")
    assert lanes.full() == [] and lanes.room("c") == 1
    lanes.release("a")
    lanes.release("b")
    assert lanes.free == 3 and lanes.full() == []
