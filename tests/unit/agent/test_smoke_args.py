"""A check runs in a scratch folder; its arguments keep resolving against the release
(#22 item 10): what names a path in the release becomes that path, nothing else changes."""

from __future__ import annotations

from pathlib import Path

from release.agent.smoke_ops import in_release, pytest_argv


def release(tmp_path: Path) -> str:
    for rel in ("tests/test_a.py", "manage.py", "scripts/run.sh", "check"):
        p = tmp_path / "rel" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    return str(tmp_path / "rel")


def test_command_arguments_that_read_as_paths_resolve_in_the_release(tmp_path: Path) -> None:
    t = release(tmp_path)
    assert in_release("manage.py", t) == f"{t}/manage.py"
    assert in_release("scripts/run.sh", t) == f"{t}/scripts/run.sh"
    assert in_release("check", t) == "check", "a subcommand word is never taken for a file"
    assert in_release("missing.py", t) == "missing.py"
    assert in_release("../outside.py", t) == "../outside.py", "nothing outside the release"
    assert in_release("/abs/x.py", t) == "/abs/x.py" and in_release("-q", t) == "-q"


def test_pytest_gets_the_releases_tests_by_path_and_its_rootdir(tmp_path: Path) -> None:
    t = release(tmp_path)
    assert pytest_argv(["tests", "-q"], t) == [f"--rootdir={t}", f"{t}/tests", "-q"]
    assert pytest_argv(["tests/test_a.py::test_one", "-k", "tests"], t) == [f"--rootdir={t}", f"{t}/tests/test_a.py::test_one", "-k", "tests"]
    assert pytest_argv(["-q", "--ignore", "tests/test_a.py"], t) == [f"--rootdir={t}", "-q", "--ignore", f"{t}/tests/test_a.py", t]
    assert pytest_argv(["--ignore=tests"], t) == [f"--rootdir={t}", f"--ignore={t}/tests", t]
    assert pytest_argv(["-q"], t) == [f"--rootdir={t}", "-q", t], "no path given: the release's own tests"
    assert pytest_argv(["--rootdir", "x", "tests"], t)[:2] == ["--rootdir", "x"]


def test_pytest_counts_come_from_its_junit_report_when_it_printed_no_summary(tmp_path: Path) -> None:
    from release.agent.smoke_ops import _junit_counts

    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10" time="1"></testsuite></testsuites>'
    )
    assert _junit_counts(str(report)) == {"passed": 4, "failed": 2, "errors": 1, "skipped": 3}
    report.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite tests="&a;">')  # never expanded, never counted
    assert _junit_counts(str(report)) == {}
    assert _junit_counts(str(tmp_path / "missing.xml")) == {}
