"""The agent's JSON (release/agent/jsonio.py): json's own C scanner and encoder without the
json package's import. It must read and write exactly what json reads and writes, refuse
what json refuses (and a little more), and never crash on a crafted document."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.agent import jsonio

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@pytest.fixture(params=["c-core", "package"])
def io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways: CPython's C core (the one the agent takes) and the json package (where the
    C core is missing)."""
    assert jsonio._scan is not None and jsonio._encode is not None, "this CPython has _json: the agent takes its C core"
    if request.param == "package":
        monkeypatch.setattr(jsonio, "_scan", None)
        monkeypatch.setattr(jsonio, "_encode", None)
    return str(request.param)


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_it_reads_and_writes_what_json_does(value: object) -> None:
    for scan, encode in ((jsonio._scan, jsonio._encode), (None, None)):
        saved = jsonio._scan, jsonio._encode
        jsonio._scan, jsonio._encode = scan, encode
        try:
            assert json.loads(jsonio.dumps(value)) == value
            assert jsonio.loads(json.dumps(value)) == value
            assert jsonio.loads(json.dumps(value, indent=2).encode()) == value  # bytes, whitespace
        finally:
            jsonio._scan, jsonio._encode = saved


@pytest.mark.parametrize(
    "doc",
    [
        "",
        "   ",
        "{",
        '{"a": 1} {"b": 2}',  # extra data
        '{"a": 1}x',
        "[1, 2,]",
        '{"a": NaN}',
        "Infinity",
        "-Infinity",
        '"tab\tinside"',  # a raw control character in a string (strict, as json's default)
        b'{"a": "\xff"}',  # not UTF-8
        "[" * 100_000 + "]" * 100_000,  # nested past the recursion limit
        '{"a": ' * 50_000 + "1" + "}" * 50_000,
    ],
)
def test_malformed_documents_are_a_value_error_never_a_crash(io: str, doc: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(doc)


def test_it_writes_no_nan_and_nothing_json_cannot_carry(io: str) -> None:
    for bad in (math.nan, math.inf, {"a": -math.inf}):
        with pytest.raises(ValueError):
            jsonio.dumps(bad)
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonio.dumps({"a": object()})
    assert jsonio.loads(jsonio.dumps({"é\n\x00": [1, 2.5, None, True]})) == {"é\n\x00": [1, 2.5, None, True]}
    assert jsonio.dumps("é").isascii()  # escaped, as json.dumps writes by default


def test_bounded_reads_refuse_depth_and_size_without_recursion() -> None:
    import time

    for depth in (65, 1000, 100_000):
        for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
            start = time.process_time()
            with pytest.raises(ValueError):
                jsonio.loads_bounded(text, 10 << 20)
            assert time.process_time() - start < 1
    nested: list[object] = []
    for _ in range(63):
        nested = [nested]
    assert jsonio.loads_bounded("[" * 64 + "]" * 64, 1000) == nested
    assert jsonio.loads_bounded('{"ok": true, "result": {"a": [1, {"b": []}]}}', 100) == {"ok": True, "result": {"a": [1, {"b": []}]}}
    with pytest.raises(ValueError, match="limit"):
        jsonio.loads_bounded('"' + "x" * 200 + '"', 100)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=3), c, max_size=4),
        max_leaves=60,
    )
)
@settings(max_examples=200, deadline=None)
def test_bounded_reads_agree_with_json_within_the_bounds(doc: object) -> None:
    text = json.dumps(doc)

    def depth(x: object) -> int:
        if isinstance(x, dict):
            return 1 + max(map(depth, x.values()), default=0)
        if isinstance(x, list):
            return 1 + max(map(depth, x), default=0)
        return 0

    if depth(doc) <= 5:
        assert jsonio.loads_bounded(text, 1 << 20, 5) == doc
    else:
        with pytest.raises(ValueError):
            jsonio.loads_bounded(text, 1 << 20, 5)


def test_an_unterminated_string_is_a_value_error_not_a_system_error() -> None:
    """A torn journal line, or a lying host's answer cut inside a string: the C scanner, run
    without the json package, failed with SystemError (not ValueError), which the readers
    of untrusted JSON did not catch."""
    import pytest

    for text in ('{"a": "ti', '"abc', '[1, "x', '{"ok": true, "result": "'):
        with pytest.raises(ValueError):
            jsonio.loads(text)
        with pytest.raises(ValueError):
            jsonio.loads_bounded(text.encode(), 1 << 20)
