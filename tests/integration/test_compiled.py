"""Compiled code for the target's Python (#22 item 4): a setuptools project with a C
extension, bundled on this controller's Python for a target that runs another Python,
is built with a Python of the target's version found here (pyenv's, on this machine), and
its extension imports on the target; with none found it stops with exit 3 naming both
versions, and never blames the package index."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

import pytest

from ..support import make_project, need, run_release, write_config

pytestmark = pytest.mark.slow

EXT = """#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};
PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&mod); }
"""


def other_python() -> str:
    """A Python of another minor version than this controller's, with its headers (pyenv's)."""
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    for v in ("3.12", "3.13", "3.10"):
        if v == mine:
            continue
        for exe in sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{v}.*/bin/python{v}")), reverse=True):
            if glob.glob(os.path.join(os.path.dirname(os.path.dirname(exe)), "include", f"python{v}*", "Python.h")):
                return exe
    return ""


def c_project(tmp_path: Path):  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "app")
    (repo.path / "src").mkdir()
    repo.git("mv", "demo_app", "src/demo_app")  # a src layout: the release runs the installed wheel, its extension built
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo-app"\nversion = "0.6.0"\nrequires-python = ">=3.9"\n'
        '[tool.setuptools]\npackage-dir = {"" = "src"}\npackages = ["demo_app"]\n'
        'ext-modules = [{name = "demo_app._speed", sources = ["src/demo_app/_speed.c"]}]\n',
    )
    repo.write("src/demo_app/_speed.c", EXT)
    repo.commit("a C extension")
    return repo


def test_a_c_extension_is_built_for_the_targets_python(tmp_path: Path) -> None:
    exe = other_python()
    need(bool(exe), "no Python of another minor version with headers on this machine (pyenv)")
    repo = c_project(tmp_path)
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        bundle={"artifacts": ["sdist", "wheel"]},
        environment={},
        target={"root": str(tmp_path / "srv"), "create_root": True, "python": exe},
        checks=[
            {
                "kind": "command",
                "name": "ext",
                "argv": ["{python}", "-c", "import demo_app._speed as s, sys; print(s.answer(), sys.version_info[:2])"],
                "expect_output": "42",
            }
        ],
    )
    b = run_release("--config", cfg, "--json", "bundle")
    assert b.returncode == 0, b.stderr
    tag = exe.rsplit("python", 1)[1].replace(".", "")
    wheel = next(a for a in json.loads(b.stdout)["artifacts"] if a.endswith(".whl"))
    assert f"-cp{tag}-cp{tag}-" in wheel, wheel
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    s = run_release("--config", cfg, "--json", "smoke")
    assert s.returncode == 0, s.stdout + s.stderr
    assert run_release("--config", cfg, "rollback").returncode == 0


def test_no_python_of_the_targets_version_is_exit_3_naming_both(tmp_path: Path) -> None:
    repo = c_project(tmp_path)
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        bundle={"artifacts": ["wheel"]},
        environment={"python": "3.99", "platforms": ["manylinux_2_17_x86_64", "linux_x86_64"]},
    )
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 3, cp.stderr
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"Python {mine}" in cp.stderr and "Python 3.99" in cp.stderr and "uv python install 3.99" in cp.stderr
    assert "the package index is not the cause" in cp.stderr
