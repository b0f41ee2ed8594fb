"""An environment is resolved for the target, not for the controller: markers are decided
by the target's Python and platform (pip decides them for the interpreter running it,
whatever --python-version says), and uv is told the target's platform."""

from __future__ import annotations

import pytest

from release.source.environment import TargetPython, for_target, platforms_for

LOCKED = [
    "exceptiongroup==1.2.2 ; python_full_version < '3.11' --hash=sha256:aa",
    "tomli==2.0.1 ; python_version < '3.11' --hash=sha256:bb",
    "pywin32==306 ; sys_platform == 'win32' --hash=sha256:cc",
    "uvloop==0.21.0 ; platform_machine == 'x86_64' and sys_platform == 'linux' --hash=sha256:dd",
    "markupsafe==2.1.5 --hash=sha256:ee --hash=sha256:ff",
]


def _target(full: str, machine: str = "x86_64") -> TargetPython:
    return TargetPython(".".join(full.split(".")[:2]), "cp", platforms_for(machine, "glibc 2.36"), full)


def test_markers_are_decided_for_the_target_python() -> None:
    old = for_target(LOCKED, _target("3.8.18"))
    assert old == [
        "exceptiongroup==1.2.2 --hash=sha256:aa",
        "tomli==2.0.1 --hash=sha256:bb",
        "uvloop==0.21.0 --hash=sha256:dd",
        "markupsafe==2.1.5 --hash=sha256:ee --hash=sha256:ff",
    ]
    new = for_target(LOCKED, _target("3.12.4"))
    assert [line.split("==")[0] for line in new] == ["uvloop", "markupsafe"]


def test_markers_are_decided_for_the_target_machine() -> None:
    arm = for_target(LOCKED, _target("3.12.4", "aarch64"))
    assert [line.split("==")[0] for line in arm] == ["markupsafe"]


@pytest.mark.parametrize(
    ("machine", "libc", "platform"),
    [
        ("x86_64", "glibc 2.36", "x86_64-manylinux_2_36"),
        ("aarch64", "glibc 2.41", "aarch64-manylinux_2_40"),
        ("x86_64", "glibc 2.30", "x86_64-manylinux_2_28"),
        ("x86_64", "glibc 2.17", "x86_64-manylinux_2_17"),
    ],
)
def test_uv_is_told_the_targets_platform(machine: str, libc: str, platform: str) -> None:
    assert TargetPython("3.11", "cp", platforms_for(machine, libc), "3.11.2").uv_platform() == platform
