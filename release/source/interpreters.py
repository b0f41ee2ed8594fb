"""Compiled code for the target's Python: which wheels a target can install, and a Python
of the target's version on this machine to build one with.

A wheel of the project (or of a dependency that publishes only an sdist) that the
controller's interpreter compiled is tagged for the controller's Python (``cp311``); a
target that runs another Python cannot install it. Such a wheel is built again with an
interpreter of the target's version found here: uv's own search, then pyenv's
installations, then ``pythonX.Y`` on PATH and in ``/usr/bin`` and ``/usr/local/bin`` (a
pyenv shim that cannot run it is skipped), each asked for its version before it is used.
When none is found the build stops with exit 3 naming both versions and the way out,
never the package index.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from ..errors import BlockedError


class TargetPython(Protocol):
    """What of the target's interpreter decides which wheels it installs (``environment.TargetPython``)."""

    @property
    def version(self) -> str: ...

    @property
    def platforms(self) -> tuple[str, ...]: ...

    @property
    def abis(self) -> tuple[str, ...]: ...


def controller_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def supported_tags(target: TargetPython) -> set[str]:
    """Every wheel tag (``py3-none-any``, ``cp312-cp312-manylinux_2_17_x86_64``, ...) the
    target's interpreter installs."""
    from packaging import tags

    version = tuple(int(p) for p in target.version.split("."))
    out = {str(t) for t in tags.cpython_tags(version, abis=[a for a in target.abis if a != "none"], platforms=list(target.platforms))}
    out |= {str(t) for t in tags.compatible_tags(version, interpreter=f"cp{target.version.replace('.', '')}", platforms=list(target.platforms))}
    return out


def fits(wheel: Path, target: TargetPython) -> bool:
    """The target can install ``wheel`` (one of its tags is the target's)."""
    from packaging.utils import parse_wheel_filename

    return any(str(t) in supported_tags(target) for t in parse_wheel_filename(wheel.name)[3])


def _version_of(exe: str) -> str:
    try:
        cp = subprocess.run([exe, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return cp.stdout.strip() if cp.returncode == 0 else ""


def _candidates(version: str) -> list[str]:
    found: list[str] = []
    try:
        from uv import find_uv_bin

        cp = subprocess.run([find_uv_bin(), "python", "find", "--no-project", version], capture_output=True, text=True, timeout=30)
        if cp.returncode == 0 and cp.stdout.strip():
            found.append(cp.stdout.strip().splitlines()[-1])
    except (ImportError, FileNotFoundError, OSError, subprocess.TimeoutExpired):
        pass
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += sorted(glob.glob(os.path.join(pyenv, "versions", f"{version}.*", "bin", f"python{version}")), reverse=True)
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    found += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    return list(dict.fromkeys(p for p in found if os.path.isfile(p) and os.access(p, os.X_OK)))


def find(version: str) -> str:
    """A Python ``version`` (``"3.12"``) of this machine, asked for its version; '' when none."""
    if version == controller_version():
        return sys.executable
    for exe in _candidates(version):
        if _version_of(exe) == version:
            return exe
    return ""


def missing(what: str, built_for: str, target: TargetPython) -> BlockedError:
    """Exit 3: ``what`` is compiled and this machine has no Python of the target's version."""
    v = target.version
    return BlockedError(
        f"{what} is compiled code built for Python {built_for}, but the target runs Python {v}, and this machine has no Python {v} to build it with",
        hint=f"install Python {v} here (uv python install {v}, or pyenv install {v}) and bundle again, or bundle on a machine that has it;"
        " the package index is not the cause",
    )
