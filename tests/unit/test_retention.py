"""The retention rule (`retention.decide`), as a pure function of the host's facts."""

from __future__ import annotations

import pytest

from release.retention import FAILED, PASSED, decide


def rel(did: str, order: int | None, smoke: str = PASSED) -> dict[str, object]:
    return {"deploy_id": did, "path": f"/srv/releases/{did}", "order": order, "smoke": smoke}


def test_only_releases_older_than_the_kept_good_ones_go() -> None:
    rs = [rel("a", 0), rel("b", 1, FAILED), rel("c", 2), rel("d", 3, ""), rel("e", 4), rel("f", 5), rel("g", 6, "")]
    d = decide(rs, 2, current="releases/f", previous="releases/e")
    assert d.remove == ("a", "c", "d"), "older than the 2 newest good ones (e, f); b is the newest failed"
    assert d.keep["f"] == "current" and "e" in d.keep and "failed" in d.keep["b"] and d.keep["g"] == "newer than the releases kept"


def test_the_current_and_previous_are_never_removed_even_when_old() -> None:
    rs = [rel("a", 0), rel("b", 1), rel("c", 2), rel("d", 3)]
    d = decide(rs, 1, current="releases/a", previous="releases/b")
    assert d.remove == ("c",) and d.keep["a"] == "current" and d.keep["b"] == "previous"


def test_nothing_goes_without_enough_good_releases_or_an_order() -> None:
    assert decide([rel("a", 0, FAILED), rel("b", 1, "")], 1, None, None).remove == ()
    assert decide([rel("a", None), rel("b", 1), rel("c", 2)], 1, None, None).remove == ("b",)
    with pytest.raises(ValueError):
        decide([], 0, None, None)


def test_a_release_that_failed_its_health_checks_is_not_a_good_one() -> None:
    """Its smoke passed, then its health checks failed after the restart (the promote went
    back): it never counts among the good releases kept, and the older good one stays."""
    unhealthy = {**rel("b", 1), "health": "health failed"}
    d = decide([rel("a", 0), unhealthy], 1, current="releases/a", previous=None)
    assert d.remove == () and d.keep["a"] == "current" and "failed its smoke or health" in d.keep["b"]
    d = decide([rel("x", 0), rel("a", 1), unhealthy, {**rel("c", 2), "health": "health passed"}], 1, current="releases/c", previous="releases/a")
    assert d.remove == ("x",) and "failed" in d.keep["b"]
