#!/usr/bin/env python3
"""Run Nox from a clone on any Python 3.11+: ``python3 scripts/bootstrap.py -s tests``.

A stock Debian or Ubuntu ``python3`` is externally managed (PEP 668): ``pip install nox``
into it is refused, and ``python3 -m venv`` needs the ``python3-venv`` package for its
pip. This script needs neither: it makes a private virtual environment for Nox
(``.nox-bootstrap/``, or ``$RELEASE_BOOTSTRAP_VENV``) without pip, installs Nox and uv into
it with the pip the interpreter has (``pip --python``, which writes only into that
environment), once, and then runs Nox there with the arguments given. On a pyenv, venv or
conda Python it does the same. Standard library only; nothing outside the repository is
written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("nox>=2024.4", "uv>=0.4")
STAMP = ".bootstrap-installed"


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def _has_pip(python: str) -> bool:
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def ensure(env: Path) -> Path:
    """The environment with Nox and uv in it (made and filled the first time)."""
    stamp = env / STAMP
    want = "\n".join(REQUIREMENTS)
    if stamp.is_file() and stamp.read_text() == want and (env / "bin" / "nox").exists():
        return env
    if not _python(env).exists():
        venv.EnvBuilder(with_pip=False, clear=False, symlinks=True).create(env)
    if _has_pip(str(_python(env))):
        argv = [str(_python(env)), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    elif _has_pip(sys.executable):
        # pip of this interpreter, writing into the new environment only (PEP 668 allows it:
        # the target is a virtual environment, not the system's)
        argv = [sys.executable, "-m", "pip", "--python", str(_python(env)), "install", "--quiet", *REQUIREMENTS]
    else:
        sys.exit(
            "bootstrap: this Python has no pip to install Nox with.\n"
            "hint: on Debian/Ubuntu: apt-get install python3-pip (or python3-venv); or install Nox yourself (pipx install nox)"
        )
    if subprocess.run(argv).returncode != 0:
        sys.exit(f"bootstrap: installing {', '.join(REQUIREMENTS)} into {env} failed (pip's message is above)")
    stamp.write_text(want)
    return env


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (it runs on whatever python3 is, before anything is installed)
        sys.exit(f"bootstrap: Python 3.11 or newer is needed (this is {sys.version.split()[0]}); run it with python3.11 or newer")
    env = Path(os.environ.get("RELEASE_BOOTSTRAP_VENV") or HERE / ".nox-bootstrap")
    ensure(env)
    # the environment's bin first on PATH: Nox and the noxfile find uv there
    path = f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([str(env / "bin" / "nox"), *argv], cwd=HERE, env={**os.environ, "PATH": path}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
