"""Every answer of a target is held to the shape its op declares (release/remote/answers.py):
each shape in agent/messages.py can be checked, real answers pass, and any JSON a lying host
could send gets a reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.agent import messages
from release.agent.ops import OPS
from release.remote.answers import _annotation, answer_problem, problem


def test_every_op_names_an_answer_shape_and_every_annotation_in_it_can_be_checked() -> None:
    for name, op in OPS.items():
        typed = getattr(messages, op.answer)
        assert hasattr(typed, "__required_keys__"), name
    for typed in vars(messages).values():
        if isinstance(typed, type) and hasattr(typed, "__required_keys__"):
            for key, tp in typed.__annotations__.items():
                problem(None, _annotation(tp), key)  # raises ValueError on an annotation it cannot check


STATUS: dict[str, Any] = {
    "root": "/srv/app",
    "releases": [
        {
            "path": "/srv/app/releases/a",
            "version": "1.0",
            "head": "ab" * 20,
            "release_stamp": "20260101T000000Z",
            "deploy_id": "20260101T000000Z-1-abcdef",
            "strategy": "timestamped",
            "promoted": True,
            "signed_by": "",
            "journal": "promoted",
            "order": 0,
            "smoke": "smoke passed",
            "health": "",
        }
    ],
    "lock": None,
    "entries": ["current", "releases"],
    "leftovers": [],
    "current": "current -> releases/a",
    "previous": None,
    "journal_skipped_lines": 0,
}


def test_an_answer_of_the_agents_shape_passes_and_each_lie_is_named() -> None:
    assert answer_problem("status", {}, STATUS) == ""
    assert answer_problem("status", {}, {**STATUS, "_log": "a warning on stderr"}) == "", "keys the shape does not name are left alone"
    assert "lacks current" in answer_problem("status", {}, {k: v for k, v in STATUS.items() if k != "current"})
    bad_release = {**STATUS, "releases": [{**STATUS["releases"][0], "path": 5}]}
    assert answer_problem("status", {}, bad_release) == "releases[0].path: int, expected str"
    assert "expected int" in answer_problem("status", {}, {**STATUS, "journal_skipped_lines": True}), "a bool is not a count"
    assert answer_problem("deploy", {"ship_only": True}, {"shipped": True, "bundle_sha256": "0" * 64}) == ""
    assert "lacks" in answer_problem("deploy", {}, {"shipped": True, "bundle_sha256": "0" * 64}), "a full deploy's answer says what it wrote"
    promote = {"current": "releases/a", "previous": None, "unchanged": False}
    assert answer_problem("promote", {}, promote) == ""
    service = {
        "release": "releases/a",
        "restart": None,
        "health": [{"name": "h", "kind": "http", "status": "passed", "attempts": 1, "seconds": 0.1, "detail": ""}],
        "ok": True,
    }
    assert answer_problem("promote", {}, {**promote, "service": service}) == ""
    assert "service.health[0]" in answer_problem("promote", {}, {**promote, "service": {**service, "health": [{}]}})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=60, deadline=None)
@given(
    value=st.dictionaries(st.sampled_from(["target", "files", "releases", "current", "results", "verify", "cleaned", "created", "x"]), json_values, max_size=6)
)
def test_any_json_a_host_sends_gets_a_reason_never_an_exception(op: str, value: dict[str, Any]) -> None:
    why = answer_problem(op, {}, json.loads(json.dumps(value)))
    assert isinstance(why, str)


def test_a_long_list_of_paths_is_checked_in_one_pass_and_its_first_offender_named() -> None:
    """verify of a release its app filled (200,000 added paths): the check stays linear and
    cheap, and a non-string among them is named by its index."""
    paths: list[object] = [f"cache/{i}" for i in range(200_000)]
    answer = {"target": "/srv/a", "added": paths, "removed": [], "changed": [], "special": [], "manifest_intact": True}
    answer.update({"deploy_manifest_intact": True, "files": 3, "clean": False})
    assert answer_problem("verify", {}, answer) == ""
    paths[123_456] = {"not": "a path"}
    assert answer_problem("verify", {}, answer) == "added[123456]: dict, expected str"
