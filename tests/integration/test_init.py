"""`release init` (#22 item 9): a first configuration for the project it runs in, detected
from the project as it is, valid, never overwriting; `.release/` ignored by git. Tried on a
real PyPI sdist and on a Django app without packaging."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

from ..support import Repo, git, need, run_release
from .test_plain_apps import django_app

pytestmark = pytest.mark.slow


def sdist_project(tmp_path: Path, spec: str) -> Path:
    """A real project from its PyPI sdist, committed to a new git repository."""
    import sys

    dl = tmp_path / "dl"
    cp = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "-d", str(dl), spec], capture_output=True, text=True, timeout=300
    )
    need(cp.returncode == 0, f"cannot download the sdist of {spec}: {cp.stderr[-300:]}")
    archive = next(dl.glob("*.tar.gz"))
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path, filter="data")
    path = tmp_path / archive.name.removesuffix(".tar.gz")
    git(path, "init", "-q", "-b", "main")
    Repo(path).commit("the sdist as a repository")
    return path


def test_init_on_a_real_sdist_writes_a_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = sdist_project(tmp_path, "packaging==24.1")
    cp = run_release("--json", "init", cwd=path)
    assert cp.returncode == 0, cp.stderr
    said = json.loads(cp.stdout)
    assert said["detected"]["name"] == "packaging" and said["detected"]["backend"] == "flit_core.buildapi"
    doc = tomllib.loads((path / "release.toml").read_text())
    assert doc["name"] == "packaging" and doc["bundle"]["artifacts"] == ["sdist", "wheel"]
    assert {"kind": "import", "modules": ["packaging"]} in doc["smoke"]["check"]
    assert (path / ".gitignore").read_text().splitlines()[-1] == ".release/"
    plan = run_release("--config", path / "release.toml", "--json", "plan", cwd=path)
    assert plan.returncode == 0, plan.stdout + plan.stderr

    before = (path / "release.toml").read_bytes()
    again = run_release("init", cwd=path)
    assert again.returncode == 4 and "release.toml" in again.stderr and "never overwritten" in again.stderr
    assert (path / "release.toml").read_bytes() == before
    assert (path / ".gitignore").read_text().count(".release/") == 1


def test_init_on_a_real_setuptools_sdist_finds_its_name_and_test_extra(tmp_path: Path) -> None:
    """httpie 3.2.4: setup.py calls setup() with nothing, setup.cfg names the project and its
    `test` extra (before: the folder's name, "httpie-3.2.4", and a pytest check announced
    but not written)."""
    path = sdist_project(tmp_path, "httpie==3.2.4")
    cp = run_release("--json", "init", cwd=path)
    assert cp.returncode == 0, cp.stderr
    doc = tomllib.loads((path / "release.toml").read_text())
    assert doc["name"] == "httpie" and doc["environment"]["extras"] == ["test"]
    assert {"kind": "pytest", "args": ["tests/", "-q"]} in doc["smoke"]["check"]
    assert json.loads(cp.stdout)["detected"]["pytest_check"] is True


def test_init_on_a_plain_django_app_releases_it(tmp_path: Path) -> None:
    repo = django_app(tmp_path / "site")
    cp = run_release("init", cwd=repo.path)
    assert cp.returncode == 0, cp.stderr
    doc = tomllib.loads((repo.path / "release.toml").read_text())
    assert doc["bundle"] == {"version_from": "git-tag", "artifacts": []}
    assert doc["environment"]["requirements"] == ["requirements.txt", "requirements-test.txt"]
    assert {"kind": "command", "name": "django-check", "argv": ["{python}", "manage.py", "check"]} in doc["smoke"]["check"]
    cfg = repo.path / "release.toml"
    for stage in (["bundle"], ["deploy", "--no-plan"], ["smoke"], ["rollback"]):
        r = run_release("--config", cfg, *stage, cwd=repo.path)
        assert r.returncode == 0, (stage, r.stdout, r.stderr)


def test_init_refuses_a_pyproject_that_already_has_a_release_table(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.mkdir()
    (path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n[tool.release]\nname = "p"\n')
    cp = run_release("init", cwd=path)
    assert cp.returncode == 4 and "[tool.release]" in cp.stderr
    assert sorted(p.name for p in path.iterdir()) == ["pyproject.toml"]


def test_a_real_poetry_project_runs_its_own_suite_from_its_dev_group(tmp_path: Path) -> None:
    """cleo 2.1.0 (poetry-core): its tests' dependencies are a Poetry group (`dev`, one name
    with two constraints by Python version); `-q` in its own addopts plus the smoke's leaves
    pytest no summary line, and the counts are read from its JUnit report instead."""
    path = sdist_project(tmp_path, "cleo==2.1.0")
    assert run_release("init", cwd=path).returncode == 0
    doc = tomllib.loads((path / "release.toml").read_text())
    assert doc["environment"]["groups"] == ["dev"]
    cfg = path / "release.toml"
    for stage in (["bundle"], ["deploy", "--no-plan"]):
        r = run_release("--config", cfg, *stage, cwd=path)
        assert r.returncode == 0, (stage, r.stdout, r.stderr)
    s = run_release("--config", cfg, "--json", "smoke", cwd=path)
    assert s.returncode == 0, s.stdout + s.stderr
    pytest_check = next(c for c in json.loads(s.stdout)["checks"] if c["kind"] == "pytest")
    assert pytest_check["data"]["counts"]["passed"] > 200, pytest_check
    assert run_release("--config", cfg, "rollback", cwd=path).returncode == 0


@pytest.mark.parametrize("stage", [["init"], ["--json", "init"]])
def test_a_reader_that_left_ends_the_output_not_the_run(tmp_path: Path, stage: list[str]) -> None:
    """`release init | head -3`: the reader closed the pipe while the summary was printed;
    it was a BrokenPipeError traceback (exit 1). The stage's own exit code stands, nothing is
    printed on stderr, and what it did stays done."""
    import os
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails as it does when `head` has left
    try:
        cp = subprocess.run([sys.executable, "-m", "release", *stage], cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert cp.returncode == 0 and "Traceback" not in cp.stderr and "BrokenPipe" not in cp.stderr, cp.stderr
    assert (tmp_path / "release.toml").is_file()


def test_init_in_a_monorepo_folder_releases_that_project(tmp_path: Path) -> None:
    """A project in a monorepo's apps/site: init names the repository's top (`../..`) and
    `subdir = "apps/site"` (it wrote repo = "." with no subdir: the bundle looked for a build
    backend at the repository's top), and the pipeline runs; `repo = "."` from inside the
    folder is the same repository (git ran there, and `git archive` of apps/site from inside
    apps/site failed: "current working directory is untracked")."""
    top = tmp_path / "mono"
    site = top / "apps" / "site"
    (site / "site").mkdir(parents=True)
    git(top, "init", "-q", "-b", "main")
    repo = Repo(top)
    repo.write("README", "other projects live here too\n")
    repo.write(
        "apps/site/pyproject.toml", '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n[project]\nname = "site"\nversion = "1.0.0"\n'
    )
    repo.write("apps/site/site/__init__.py", '__version__ = "1.0.0"\n')
    repo.commit("monorepo")
    cp = run_release("init", cwd=site)
    assert cp.returncode == 0, cp.stderr
    doc = tomllib.loads((site / "release.toml").read_text())
    assert doc["source"]["repo"] == "../.." and doc["source"]["subdir"] == "apps/site"
    repo.commit("release.toml")
    cfg = site / "release.toml"
    for stage in (["bundle"], ["deploy", "--no-plan"], ["smoke"], ["rollback"]):
        r = run_release("--config", cfg, *stage, cwd=site)
        assert r.returncode == 0, (stage, r.stdout[-2000:], r.stderr[-2000:])
    cfg.write_text(cfg.read_text().replace('repo = "../.."', 'repo = "."'))
    repo.commit("repo = '.'")
    r = run_release("--config", cfg, "--json", "bundle", cwd=site)
    assert r.returncode == 0, r.stderr[-2000:]
    with tarfile.open(json.loads(r.stdout)["bundle"]) as tf:
        assert any(n.endswith("/site/__init__.py") for n in tf.getnames()) and not any(n.endswith("/README") for n in tf.getnames())
