import pytest

import cutter_agent
from cutter_agent import orchestrator
from cutter_agent.orchestrator import ExecutionDisabled, Mode


def test_version_is_0_6():
    assert cutter_agent.__version__.startswith("0.6")


def test_kill_switch_is_off():
    assert orchestrator.__execution_enabled__ is False


def test_live_mode_refused():
    with pytest.raises(ExecutionDisabled):
        orchestrator.check_mode(Mode.LIVE)


def test_dryrun_allowed():
    assert orchestrator.check_mode(Mode.DRYRUN) is Mode.DRYRUN


def test_plan_batch_refuses_live():
    with pytest.raises(ExecutionDisabled):
        orchestrator.plan_batch({"a": "x"}, Mode.LIVE)


def test_plan_batch_counts_units():
    batch = orchestrator.plan_batch({"a": "One.\n\nTwo.", "b": "Three."})
    assert batch.planned == 3
    assert batch.written == 0


def test_plan_batch_is_ordered_by_doc():
    batch = orchestrator.plan_batch({"b": "B.", "a": "A."})
    assert [u.doc for u in batch.units] == ["a", "b"]


def test_status_fields():
    s = orchestrator.status()
    assert s["milestone"] == "O4/O6-ready"
    assert s["execution_enabled"] is False
    assert s["modes"] == ["DRYRUN", "LIVE"]


def test_mode_values():
    assert Mode("dryrun") is Mode.DRYRUN
    assert Mode("live") is Mode.LIVE
