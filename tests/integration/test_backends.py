"""Real projects of every common build backend: the version comes from the backend itself
(PEP 517), in PEP 440 normal form, and goes through bundle -> deploy -> rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..support import Repo, git, run_release, write_config

PKG = 'def hello():\n    return "hi"\n'

BACKENDS: dict[str, tuple[dict[str, str], str]] = {
    "flit-static": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n'
            '[project]\nname = "flitstatic"\nversion = "1.2.0rc1"\ndescription = "x"\n',
            "flitstatic/__init__.py": PKG,
        },
        "1.2.0rc1",
    ),
    "flit-dynamic": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n'
            '[project]\nname = "flitdyn"\ndynamic = ["version", "description"]\n',
            "flitdyn/__init__.py": '"""A flit package."""\n__version__ = "2.0.post1"\n' + PKG,
        },
        "2.0.post1",
    ),
    "poetry-core": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["poetry-core>=1.0"]\nbuild-backend = "poetry.core.masonry.api"\n'
            '[tool.poetry]\nname = "poetryapp"\nversion = "0.3.0-beta.2"\ndescription = "x"\nauthors = ["A <a@example.invalid>"]\n'
            'packages = [{include = "poetryapp"}]\n[tool.poetry.dependencies]\npython = ">=3.8"\n',
            "poetryapp/__init__.py": PKG,
        },
        "0.3.0b2",
    ),
    "setuptools-attr": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "stattr"\ndynamic = ["version"]\n[tool.setuptools.dynamic]\nversion = {attr = "stattr.__version__"}\n'
            '[tool.setuptools.packages.find]\nwhere = ["src"]\n',
            "src/stattr/__init__.py": '__version__ = "4.5.6"\n' + PKG,
        },
        "4.5.6",
    ),
    "setuptools-scm": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64", "setuptools-scm>=8"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "scmapp"\ndynamic = ["version"]\n[tool.setuptools_scm]\n[tool.setuptools]\npackages = ["scmapp"]\n',
            "scmapp/__init__.py": PKG,
        },
        "7.1",  # the tag v7.1 on the recorded commit
    ),
    "hatchling-vcs": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["hatchling", "hatch-vcs"]\nbuild-backend = "hatchling.build"\n'
            '[project]\nname = "hvcs"\ndynamic = ["version"]\n[tool.hatch.version]\nsource = "vcs"\n'
            '[tool.hatch.build.targets.wheel]\npackages = ["src/hvcs"]\n',
            "src/hvcs/__init__.py": PKG,
        },
        "7.1",
    ),
    "pdm-backend": (
        {
            "pyproject.toml": '[build-system]\nrequires = ["pdm-backend"]\nbuild-backend = "pdm.backend"\n'
            '[project]\nname = "pdmapp"\ndynamic = ["version"]\nrequires-python = ">=3.8"\n'
            '[tool.pdm.version]\nsource = "file"\npath = "src/pdmapp/__init__.py"\n',
            "src/pdmapp/__init__.py": '__version__ = "1!3.0.dev4"\n' + PKG,
        },
        "1!3.0.dev4",
    ),
}


def backend_repo(path: Path, files: dict[str, str]) -> Repo:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    for rel, text in files.items():
        repo.write(rel, text)
    repo.commit("release")
    git(path, "tag", "v7.1")
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_version_from_the_backend_through_deploy_and_rollback(tmp_path: Path, backend: str) -> None:
    files, version = BACKENDS[backend]
    repo = backend_repo(tmp_path / "app", files)
    root = tmp_path / "target"
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "app"}, target={"root": str(root)}, bundle={"artifacts": ["wheel"]})
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert res["version"] == version, res
    assert f"-{version}-" in Path(res["bundle"]).name
    cp = run_release("--config", cfg, "--json", "deploy")
    assert cp.returncode == 0, cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    assert target.name == f"app-v{version}" and f"version: {version}" in (target / "DEPLOY-MANIFEST.txt").read_text()
    assert run_release("--config", cfg, "rollback").returncode == 0
    assert not target.exists()
    cache = list((tmp_path / ".release" / "cache" / "metadata").glob("*.json"))
    assert bool(cache) is (backend != "flit-static"), "static metadata is read as is; the backend's answer is cached per commit"


def test_a_failed_build_shows_the_backends_own_error(tmp_path: Path) -> None:
    """A build backend writes its error to build's stdout (meson-python: "Dist currently only
    works with Git or Mercurial repos") and pypa build only a summary to stderr: the error the
    operator sees holds the backend's own words, and the meson case gets its way out."""
    backend = (
        "import sys\n"
        "def build_sdist(sdist_directory, config_settings=None):\n"
        "    print('+ meson dist --allow-dirty --no-tests --formats gztar')\n"
        "    print('Dist currently only works with Git or Mercurial repos')\n"
        "    sys.stdout.flush()\n"
        "    raise SystemExit(1)\n"
    )
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "mesonlike"\nbackend-path = ["."]\n[project]\nname = "mesonlike-app"\nversion = "1.0"\n',
        "mesonlike.py": backend,
    }
    repo = backend_repo(tmp_path / "app", files)
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "app"}, target={"root": str(tmp_path / "target")}, bundle={"artifacts": ["sdist"]})
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 1, cp.stderr
    assert "Dist currently only works with Git or Mercurial repos" in cp.stderr, cp.stderr
    assert "Backend subprocess exited" in cp.stderr, "pypa build's own summary is kept too"
    assert 'artifacts = ["wheel"]' in cp.stderr, "the way out for a backend that builds its sdist from a VCS checkout"
    assert not (tmp_path / "bundles").exists() or not list((tmp_path / "bundles").iterdir()), "no bundle from a failed build"
