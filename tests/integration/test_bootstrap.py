"""The README's first command on a stock Debian/Ubuntu Python (#22 item 1): the system
``python3`` is externally managed (PEP 668), so ``pip install nox`` into it is refused;
``scripts/bootstrap.py`` makes its own environment with that interpreter's pip and runs
Nox from it, on the first run and (without installing again) on the next."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support import need

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parents[2]


def system_python() -> str:
    """Debian's own interpreter, when this machine has one that is externally managed."""
    for exe in ("/usr/bin/python3",):
        if not os.path.exists(exe):
            continue
        cp = subprocess.run(
            [exe, "-c", "import sys, sysconfig; print(sys.version_info >= (3, 11), sysconfig.get_path('stdlib'))"], capture_output=True, text=True
        )
        ok, _, stdlib = cp.stdout.strip().partition(" ")
        if ok == "True" and glob.glob(os.path.join(stdlib, "EXTERNALLY-MANAGED")):
            return exe
    return ""


def test_the_first_command_works_on_an_externally_managed_python(tmp_path: Path) -> None:
    exe = system_python()
    need(bool(exe), "no externally managed system Python 3.11+ (Debian 12 / Ubuntu 24.04's /usr/bin/python3) on this machine")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "RELEASE_BOOTSTRAP_VENV": str(tmp_path / "venv")}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "UV_DEFAULT_INDEX", "UV_INDEX"):
        if key in os.environ:
            env[key] = os.environ[key]
    (tmp_path / "home").mkdir()
    refused = subprocess.run([exe, "-m", "pip", "install", "--dry-run", "nox"], capture_output=True, text=True, env=env)
    need(refused.returncode != 0 or "externally-managed" in refused.stderr, "this system Python lets pip install into it")
    assert "externally-managed-environment" in refused.stderr, "the reason the bootstrap exists: PEP 668"

    first = subprocess.run([exe, str(HERE / "scripts" / "bootstrap.py"), "--version"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    said = (first.stdout + first.stderr).strip().splitlines()
    assert said and said[-1].strip()[:4].isdigit(), said  # nox's version (on stderr)
    assert (tmp_path / "venv" / "bin" / "uv").exists(), "uv is there for the noxfile's pipeline environment"
    t0 = time.monotonic()
    again = subprocess.run([exe, str(HERE / "scripts" / "bootstrap.py"), "--list"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "bundle" in again.stdout and "tests" in again.stdout, again.stdout + again.stderr
    assert time.monotonic() - t0 < 30, "the second run installs nothing"


def test_an_old_python_is_told_what_it_needs(tmp_path: Path) -> None:
    old = next((p for p in glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))), "") or (
        sys.executable if sys.version_info < (3, 11) else ""
    )
    need(bool(old), "no Python older than 3.11 on this machine")
    cp = subprocess.run(
        [old, str(HERE / "scripts" / "bootstrap.py"), "--version"],
        capture_output=True,
        text=True,
        env={"RELEASE_BOOTSTRAP_VENV": str(tmp_path / "v")},
        timeout=60,
    )
    assert cp.returncode != 0 and "Python 3.11 or newer" in cp.stderr
    assert not (tmp_path / "v").exists()
