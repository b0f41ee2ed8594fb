"""What a failed command's error shows: its stderr, after the end of its stdout when that is
text; never binary output. Real commands through the one subprocess helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import proc
from release.errors import ReleaseError


def _fails(script: str) -> ReleaseError:
    with pytest.raises(ReleaseError) as err:
        proc.run(["sh", "-c", script], what="the command")
    assert err.value.message == "the command failed with exit code 3"
    return err.value


def test_stderr_alone() -> None:
    assert _fails("echo why >&2; exit 3").detail == "why"


def test_stdout_alone_is_shown() -> None:
    assert _fails("echo only-here; exit 3").detail == "only-here"


def test_a_backends_words_on_stdout_come_before_the_summary_on_stderr() -> None:
    assert _fails("echo 'the real cause'; echo 'ERROR Backend subprocess exited' >&2; exit 3").detail == "the real cause\nERROR Backend subprocess exited"


def test_binary_stdout_is_left_out() -> None:
    assert _fails("printf 'a\\000b'; echo why >&2; exit 3").detail == "why"


def test_the_detail_keeps_the_ends_within_its_room() -> None:
    detail = _fails("for i in $(seq 3000); do echo out$i; done; for i in $(seq 3000); do echo err$i >&2; done; exit 3").detail
    assert len(detail) <= 4001 and detail.endswith("err3000") and "out3000" in detail and "out1\n" not in detail


def test_a_failure_is_classified_where_it_is_raised_not_by_its_text(tmp_path: Path) -> None:
    """A target's answer names its kind (disk-full); a message that merely says "No space"
    is not taken for one, and one that does not say it still is. The fleet's reason reads
    the class."""
    import errno

    from release.errors import BlockedError, DiskFullError, UnreachableError, disk_error
    from release.fleet import stages as fleet
    from release.remote import transport

    def answering(doc: str) -> transport.LocalTransport:
        fake = tmp_path / f"python-{abs(hash(doc))}"
        fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{doc}'\n")
        fake.chmod(0o755)
        return transport.LocalTransport(str(fake))

    with pytest.raises(DiskFullError) as full:
        answering('{"ok": false, "exit_code": 3, "message": "quota of the volume reached", "kind": "disk-full"}').agent("status", {"root": str(tmp_path)})
    assert fleet.reason(full.value).startswith("disk full: ")
    with pytest.raises(BlockedError) as blocked:
        answering('{"ok": false, "exit_code": 3, "message": "No space in the schedule"}').agent("status", {"root": str(tmp_path)})
    assert not isinstance(blocked.value, DiskFullError) and fleet.reason(blocked.value).startswith("blocked: ")
    local = disk_error(OSError(errno.ENOSPC, "No space left on device", "/x"), "/x", hint="free space")
    assert isinstance(local, DiskFullError)
    assert fleet.reason(UnreachableError("cannot connect to SSH host web1")).startswith("unreachable: ")
