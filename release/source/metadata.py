"""The project's name and version, as its own build backend says (PEP 517).

Fully static metadata (``project.name`` and ``project.version`` in pyproject.toml, and
``version`` not in ``dynamic``) is read as is: PEP 621 makes the backend honour it.
Anything else (flit's ``__version__``, poetry-core's ``[tool.poetry]``, setuptools'
``attr:``, hatch-vcs, setuptools-scm, pdm-backend, ...) is asked of the backend itself:
the recorded commit is exported to a private folder and pypa ``build`` calls
``prepare_metadata_for_build_wheel`` in an isolated build environment, in a child
process with a clean environment. Projects versioned from git (hatch-vcs,
setuptools-scm) get the version git-describe gives at the recorded commit through
``SETUPTOOLS_SCM_PRETEND_VERSION``, since the export has no ``.git``.

Results are cached per (commit, subdir) under ``<state>/cache/metadata/`` so that
plan, bundle and deploy do not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import proc, runfolders, tomlinput
from ..errors import ConfigError, ReleaseError
from ..state import private_dir
from . import git as gitsource

_SCRIPT = """
import json, sys
from build.util import project_wheel_metadata
m = project_wheel_metadata(sys.argv[1], isolated=True)
print(json.dumps({"name": m["Name"], "version": m["Version"], "requires_python": m.get("Requires-Python") or ""}))
"""


@dataclass(frozen=True)
class Meta:
    name: str
    version: str
    source: str  # "static", "backend", or "vcs" (backend, with the git-describe version)
    requires_python: str = ""


def _read_pyproject(src: gitsource.Source) -> dict[str, Any] | None:
    raw = gitsource.read_file(src, "pyproject.toml")
    if raw is None:
        return None
    try:
        return tomlinput.parse(raw, tomlinput.MAX_PYPROJECT)
    except tomlinput.TomlInputError as exc:
        raise ConfigError(f"the project's pyproject.toml {exc}", hint="fix pyproject.toml at the recorded commit") from None


def is_package(src: gitsource.Source) -> bool:
    """The commit's project has a build backend to ask: a ``[build-system]`` or ``[project]``
    table in pyproject.toml, or a setup.py. Anything else (a Django or Flask application
    with a requirements file, a pyproject.toml holding only tool settings) is a plain
    application: released as its tree, its version from the config or its git tags."""
    data = _read_pyproject(src)
    if data is not None and ("build-system" in data or "project" in data):
        return True
    return gitsource.read_file(src, "setup.py") is not None


def _pyproject(src: gitsource.Source) -> dict[str, Any]:
    if not is_package(src):
        raise ConfigError(
            f"the project at '{src.subdir or '.'}' in commit {src.sha[:12]} has no build backend (no pyproject.toml [build-system] or [project], no setup.py)",
            hint='a plain application: set [bundle] version = "1.0.0" (or version_from = "git-tag") and artifacts = []; '
            "a package in a subfolder: set source.subdir to its folder",
        )
    return _read_pyproject(src) or {}


def uses_vcs_version(data: dict[str, Any]) -> bool:
    tool = data.get("tool", {})
    requires = " ".join(data.get("build-system", {}).get("requires", []))
    hatch_version = tool.get("hatch", {}).get("version", {})
    pdm_version = tool.get("pdm", {}).get("version", {})
    return bool(
        hatch_version.get("source") == "vcs"
        or "setuptools_scm" in tool
        or "setuptools-scm" in requires
        or "setuptools_scm" in requires
        or pdm_version.get("source") == "scm"
    )


def _cache_file(state: Path, src: gitsource.Source) -> Path:
    key = hashlib.sha256(f"{src.sha}\0{src.subdir}".encode()).hexdigest()[:24]
    return state / "cache" / "metadata" / f"{key}.json"


def project_metadata(src: gitsource.Source, state: Path) -> Meta:
    """Name and version of the project at the recorded commit (cached per commit and subdir)."""
    data = _pyproject(src)
    project = data.get("project", {})
    dynamic = set(project.get("dynamic", []))
    if isinstance(project.get("version"), str) and isinstance(project.get("name"), str) and "version" not in dynamic:
        return Meta(project["name"], project["version"], "static", str(project.get("requires-python", "")))
    cache = _cache_file(state, src)
    try:
        hit = json.loads(cache.read_text())
        return Meta(hit["name"], hit["version"], hit["source"], hit.get("requires_python", ""))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    vcs = uses_vcs_version(data)
    env = {"SOURCE_DATE_EPOCH": str(src.commit_time)}
    if vcs:
        env["SETUPTOOLS_SCM_PRETEND_VERSION"] = gitsource.scm_version(src)
    if shutil.which("uv"):
        env["UV_NO_PROGRESS"] = "1"
    with runfolders.private("release-meta-") as tmp:
        tree = tmp / "src"
        gitsource.export(src, tree)
        cp = proc.run(
            [sys.executable, "-c", _SCRIPT, str(tree)],
            env=env,
            check=False,
            what="the build backend's prepare_metadata_for_build_wheel",
        )
    if cp.returncode != 0:
        raise ReleaseError(
            "the project's build backend could not report its metadata (PEP 517 prepare_metadata_for_build_wheel)",
            hint="the backend's error is shown above; fix the project's build configuration and commit",
            detail=proc.failure_detail(cp),
        )
    got = json.loads(cp.out.strip().splitlines()[-1])
    meta = Meta(got["name"], got["version"], "vcs" if vcs else "backend", got.get("requires_python", ""))
    private_dir(cache.parent)
    cache.write_text(json.dumps({"name": meta.name, "version": meta.version, "source": meta.source, "requires_python": meta.requires_python}))
    return meta


@dataclass(frozen=True)
class VersionInfo:
    version: str
    source: str  # "static", "vcs", "file:<path>"

    @property
    def from_vcs(self) -> bool:
        return self.source == "vcs"


def project_version(src: gitsource.Source, state: Path, version: str = "", version_from: str = "") -> VersionInfo:
    """The release's version at the recorded commit, in PEP 440 normal form: ``bundle.version``
    when the config sets it, the nearest git tag with ``version_from = "git-tag"``, else what
    the build backend says (see ``metadata``)."""
    from ..names import normalize_version

    if version:
        return VersionInfo(version, "config")
    if version_from == "git-tag":
        return VersionInfo(normalize_version(gitsource.tag_version(src)), "git-tag")
    meta = project_metadata(src, state)
    return VersionInfo(normalize_version(meta.version), meta.source)
