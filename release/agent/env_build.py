"""Build ``<release>/.venv`` offline, inside the staging folder, from the bundle's wheels only.

No pip, no network, no index: the venv's layout is made here (``bin/python`` links to
this interpreter, ``pyvenv.cfg`` without the staging path), and every wheel is installed
by pypa ``installer``, which travels with the agent's code (it is never taken from
the bundle, so deploying runs no code of the bundle). Console scripts get the release's
final interpreter path in their shebang; no bytecode is compiled (a .pyc would hold the
staging path). Every wheel's sha256 is checked against the lock first. The environment's
files are then listed, with their sha256, in ENVIRONMENT-MANIFEST.json, which ``verify``
and ``rollback`` use as they use BUNDLE-MANIFEST.json.
"""

from __future__ import annotations

import os
import sys

from . import jsonio
from .fsutil import hash_at, open_dir, walk
from .names import VENV_DIR, tree_sha256
from .protocol import ENV_MANIFEST, AgentError, checkpoint, refuse, say

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any


VENV = VENV_DIR


def _version_tuple(text: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def satisfies(requires: str, version: tuple[int, ...]) -> bool:
    """A small evaluator of ``requires-python`` (>=, >, <=, <, ==, !=, ~=, '.*' wildcards)."""
    import re

    for clause in filter(None, (c.strip() for c in requires.split(","))):
        m = re.fullmatch(r"(~=|==|!=|>=|<=|>|<)\s*([0-9][0-9.]*)(\.\*)?", clause)
        if not m:
            continue  # a form this evaluator does not know is left to the controller's check
        op, want, wild = m[1], _version_tuple(m[2]), bool(m[3])
        have = version[: len(want)] if wild else version
        padded = want + (0,) * (len(have) - len(want)) if not wild else want
        ok = {
            ">=": have >= padded,
            ">": have > padded,
            "<=": have <= padded,
            "<": have < padded,
            "==": have == padded,
            "!=": have != padded,
            "~=": have >= padded and have[: len(want) - 1] == want[:-1],
        }[op]
        if not ok:
            return False
    return True


def check_interpreter(env: dict[str, Any]) -> None:
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if env.get("python") != mine:
        raise AgentError(
            3,
            f"the bundle's environment was resolved for Python {env.get('python')}; the target's interpreter is {mine}",
            "bundle again for this target (or fix environment.python)",
        )
    requires = str(env.get("requires_python") or "")
    if requires and not satisfies(requires, tuple(sys.version_info[:3])):
        raise AgentError(
            3,
            f"the target's Python {sys.version.split()[0]} does not satisfy the project's requires-python {requires!r}",
            "deploy to an interpreter it supports (target.python)",
        )


def build(tree: str, final: str, env: dict[str, Any], scanned: dict[str, str]) -> tuple[dict[str, Any], set[str], set[str]]:
    """Make ``tree/.venv`` for the release that will live at ``final``; return its facts, and
    the files and folders it wrote (paths relative to ``tree``)."""
    check_interpreter(env)
    lock = os.path.join(tree, env["lock"])
    if scanned.get(env["lock"]) != env.get("lock_sha256") or hash_at(None, lock) != env.get("lock_sha256"):
        raise refuse(f"the environment's lock {env['lock']} does not match BUNDLE-MANIFEST.json", "the bundle was tampered with; rebuild it")
    for pkg in env["packages"]:
        if scanned.get(pkg["path"]) != pkg["sha256"]:
            raise refuse(
                f"wheel {pkg['path']} ({pkg['name']} {pkg['version']}) does not match its sha256 in the lock", "the bundle was tampered with; rebuild it"
            )
    venv = os.path.join(tree, VENV)
    final_venv = os.path.join(final, VENV)
    pyver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = os.path.join(venv, "lib", pyver, "site-packages")
    os.makedirs(site, 0o755)
    os.mkdir(os.path.join(venv, "bin"), 0o755)
    base = getattr(sys, "_base_executable", "") or sys.executable
    for name in ("python", "python3", pyver):
        os.symlink(base, os.path.join(venv, "bin", name))
    with open(os.path.join(venv, "pyvenv.cfg"), "x") as f:
        f.write(
            f"home = {os.path.dirname(base)}\ninclude-system-site-packages = false\nversion = {'.'.join(map(str, sys.version_info[:3]))}\nexecutable = {base}\n"
        )
    import pathlib
    import zipfile

    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    from . import wheelsafe
    from .tarsafe import Space

    def broken(pkg: dict[str, Any], why: object) -> AgentError:
        return refuse(
            f"wheel {pkg['path']} ({pkg['name']} {pkg['version']}) cannot be installed: {why}",
            "the bundle was tampered with or holds a broken wheel; rebuild it",
        )

    # every wheel is checked (names, bounds, sizes) before any is installed; their declared
    # sizes must fit the disk as the bundle's members had to
    space_fd = open_dir(venv)
    try:
        space = Space(space_fd)
    finally:
        os.close(space_fd)
    for pkg in env["packages"]:
        try:
            wheel = wheelsafe.check(os.path.join(tree, pkg["path"]))
        except wheelsafe.WheelProblem as exc:
            raise broken(pkg, exc) from None
        space.take(f"{pkg['name']} {pkg['version']}", wheel.size, max(wheel.files, 1))
    scheme = {
        "purelib": site,
        "platlib": site,
        "headers": os.path.join(venv, "include", "site", pyver),
        "scripts": os.path.join(venv, "bin"),
        "data": venv,
    }
    destination = wheelsafe.safe_destination(SchemeDictionaryDestination)
    dest = destination(scheme, interpreter=os.path.join(final_venv, "bin", "python"), script_kind="posix", bytecode_optimization_levels=())
    for pkg in env["packages"]:
        say(f"installing {pkg['name']} {pkg['version']}")
        try:
            with WheelFile.open(pathlib.Path(tree, pkg["path"])) as source:
                install(source, dest, {"INSTALLER": b"release\n"})
        except (InstallerError, ValueError, KeyError, zipfile.BadZipFile, FileExistsError, wheelsafe.WheelProblem) as exc:
            # a path out of the scheme folders, a file another wheel wrote, a broken archive
            # or RECORD: stopped before writing it; the staging folder goes with it
            raise broken(pkg, exc) from None
        checkpoint("deploy:installing")
    entries, venv_dirs = walk_entries(tree, VENV)
    dirs = sorted(venv_dirs)
    files = [{"path": p, "id": v} for p, v in sorted(entries.items())]
    doc = {"format": 1, "python": env["python"], "lock_sha256": env["lock_sha256"], "files": files, "dirs": dirs}
    import json  # only here, where an environment is built: its import costs every other op

    with open(os.path.join(tree, ENV_MANIFEST), "x") as f:
        json.dump(doc, f, indent=0, sort_keys=True)
    facts = {"env_packages": len(env["packages"]), "env_files": len(entries), "env_sha256": tree_sha256(entries)}
    return facts, {ENV_MANIFEST, *entries}, set(dirs)


def walk_entries(root: str, top: str) -> tuple[dict[str, str], set[str]]:
    """({path: sha256 | 'link:' + target}, folders) under ``root/top``, paths relative to ``root``."""
    kinds: dict[str, str] = {}
    dirs: set[str] = set()
    fd = open_dir(os.path.join(root, top))
    try:
        walk(fd, top + "/", kinds, dirs)
        out = {
            rel: ("link:" + os.readlink(rel[len(top) + 1 :], dir_fd=fd) if k == "l" else hash_at(fd, rel[len(top) + 1 :]))
            for rel, k in kinds.items()
            if k != "o"
        }
    finally:
        os.close(fd)
    return out, dirs | {top}


def read_env(folder_fd: int) -> tuple[dict[str, str], set[str]] | None:
    """ENVIRONMENT-MANIFEST.json of a release: ({path: id}, folders), or None when it has none."""
    from .fsutil import _read_regular

    try:
        doc = jsonio.loads(_read_regular(folder_fd, ENV_MANIFEST, 256 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AgentError):
        return {}, set()
    files = {str(e["path"]): str(e["id"]) for e in doc.get("files", []) if isinstance(e, dict)}
    return files, {str(d) for d in doc.get("dirs", [])}
