"""Deploy records and their ``.open`` markers: a run reads the records that may still
change, not every deploy ever made."""

from __future__ import annotations

import json
from pathlib import Path

from release.state import State


def _record(deploy_id: str, status: str) -> dict[str, object]:
    return {"deploy_id": deploy_id, "status": status, "host": "localhost", "root": "/srv"}


def test_the_markers_follow_each_record_to_its_final_status(tmp_path: Path) -> None:
    state = State(tmp_path / "state")
    state.save(_record("20260101T000000Z-1-a", "started"))
    marker = state.deploys / "20260101T000000Z-1-a.open"
    assert marker.exists()
    state.save(_record("20260101T000000Z-1-a", "deployed"))
    state.save(_record("20260102T000000Z-1-b", "unknown"))
    assert [r["deploy_id"] for r in state.open_records()] == ["20260101T000000Z-1-a", "20260102T000000Z-1-b"]
    state.save(_record("20260101T000000Z-1-a", "rolled-back"))
    state.save(_record("20260102T000000Z-1-b", "failed"))
    assert not marker.exists() and not list(state.deploys.glob("*.open"))
    assert state.open_records() == []
    assert {r["status"] for r in state.records()} == {"rolled-back", "failed"}, "every record is kept"
    assert state.last(("rolled-back",))["deploy_id"] == "20260101T000000Z-1-a"


def test_final_records_are_not_read(tmp_path: Path) -> None:
    """Five hundred finished deploys, unreadable on purpose: the open record is found
    without touching them (a full read would name them as corrupt)."""
    state = State(tmp_path / "state")
    state.save(_record("20260301T000000Z-1-z", "deployed"))
    for i in range(500):
        (state.deploys / f"20260101T{i:06d}Z-1-x.json").write_text("{not json")
    assert [r["deploy_id"] for r in State(state.root).open_records()] == ["20260301T000000Z-1-z"]
    fresh = State(state.root)
    assert fresh.last()["deploy_id"] == "20260301T000000Z-1-z" and fresh.corrupt == []
    assert len(fresh.records()) == 1 and len(fresh.corrupt) == 500, "the full read still names them"


def test_a_state_folder_written_before_the_markers_gets_them_on_its_first_save(tmp_path: Path) -> None:
    deploys = tmp_path / "state" / "deploys"
    deploys.mkdir(parents=True, mode=0o700)
    for deploy_id, status in [("20250101T000000Z-1-a", "rolled-back"), ("20250102T000000Z-1-b", "deployed"), ("20250103T000000Z-1-c", "unknown")]:
        (deploys / f"{deploy_id}.json").write_text(json.dumps(_record(deploy_id, status)))
    state = State(tmp_path / "state")
    assert [r["deploy_id"] for r in state.open_records()] == ["20250102T000000Z-1-b", "20250103T000000Z-1-c"], "no markers yet: a full read"
    state.save(_record("20250104T000000Z-1-d", "started"))
    assert (deploys / ".markers").exists()
    assert sorted(p.name for p in deploys.glob("*.open")) == ["20250102T000000Z-1-b.open", "20250103T000000Z-1-c.open", "20250104T000000Z-1-d.open"]
    assert [r["deploy_id"] for r in State(tmp_path / "state").open_records()] == ["20250102T000000Z-1-b", "20250103T000000Z-1-c", "20250104T000000Z-1-d"]


def test_a_marker_left_without_its_record_is_harmless(tmp_path: Path) -> None:
    """A crash between the marker and the record's first write."""
    state = State(tmp_path / "state")
    state.save(_record("20260101T000000Z-1-a", "deployed"))
    (state.deploys / "20260102T000000Z-1-b.open").touch()
    assert [r["deploy_id"] for r in State(state.root).open_records()] == ["20260101T000000Z-1-a"]
