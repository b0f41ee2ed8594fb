"""Apps as they are (#22 items 2, 3 and 8): a Django application without packaging
(requirements files, manage.py, no pyproject.toml) released with its version from a git
tag; a Poetry project whose test group runs the smoke's pytest; what ships chosen by
include/exclude and export-ignore, listed in the manifest and the plan."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from ..support import Repo, git, listing, run_release, write_config

pytestmark = pytest.mark.slow

MANAGE = """#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""
SETTINGS = """SECRET_KEY = "test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "polls"]
ROOT_URLCONF = "mysite.urls"
DATABASES = {}
USE_TZ = True
"""
URLS = """from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("version", lambda request: HttpResponse("2.4.0"))]
"""
TEST = """import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
import django

django.setup()


def test_version_view():
    from django.test import Client

    assert Client().get("/version", HTTP_HOST="localhost").content == b"2.4.0"
"""


def django_app(path: Path) -> Repo:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.write("manage.py", MANAGE, mode=0o755)
    repo.write("mysite/__init__.py", "")
    repo.write("mysite/settings.py", SETTINGS)
    repo.write("mysite/urls.py", URLS)
    repo.write("polls/__init__.py", "")
    repo.write("polls/models.py", "")
    repo.write("requirements.txt", "Django>=4.2,<6\n")
    repo.write("requirements-test.txt", "-r requirements.txt\npytest>=7\n")
    repo.write("tests/test_views.py", TEST)
    repo.write("docs/big-manual.md", "# manual\n" + "x" * 50_000)
    repo.write("scratch/notes.txt", "not for production\n")
    repo.write(".gitattributes", "scratch/ export-ignore\n")
    repo.commit("a django app")
    repo.git("tag", "v2.4.0")
    return repo


def test_a_django_app_without_packaging_is_a_release(tmp_path: Path) -> None:
    repo = django_app(tmp_path / "site")
    root = tmp_path / "srv"
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "mysite"},
        bundle={"artifacts": [], "version_from": "git-tag", "exclude": ["docs/"]},
        environment={"requirements": ["requirements-test.txt"]},
        target={"root": str(root), "create_root": True},
        checks=[
            {"kind": "compileall"},
            {"kind": "command", "name": "django-check", "argv": ["{python}", "manage.py", "check"], "expect_output": "no issues"},
            {"kind": "pytest", "args": ["tests", "-q", "-p", "no:cacheprovider"], "expect_passed": 1},
        ],
    )
    plan = run_release("--config", cfg, "--json", "plan")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["bundle_plan"]["plain"] is True and planned["bundle_plan"]["version"] == "2.4.0"
    assert planned["left_out"]["counts"] == {"exclude": 1, "export-ignore": 1}, planned["left_out"]

    b = run_release("--config", cfg, "--json", "bundle")
    assert b.returncode == 0, b.stderr
    bundle = Path(json.loads(b.stdout)["bundle"])
    with tarfile.open(bundle) as tf:
        names = {m.name.split("/", 1)[1] for m in tf if "/" in m.name}
        manifest = json.loads(tf.extractfile(next(m for m in tf if m.name.endswith("/BUNDLE-MANIFEST.json"))).read())  # type: ignore[union-attr]
    assert "manage.py" in names and "docs/big-manual.md" not in names and "scratch/notes.txt" not in names
    assert manifest["plain"] is True and manifest["version_source"] == "git-tag"
    assert manifest["left_out"]["counts"] == {"exclude": 1, "export-ignore": 1}
    assert sorted(manifest["left_out"]["paths"]) == ["docs/big-manual.md", "scratch/notes.txt"]
    assert {p["name"].lower() for p in manifest["environment"]["packages"]} >= {"django", "pytest", "asgiref"}

    d = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert d.returncode == 0, d.stderr
    s = run_release("--config", cfg, "--json", "smoke")
    assert s.returncode == 0, s.stdout + s.stderr
    assert {c["name"]: c["status"] for c in json.loads(s.stdout)["checks"]} == {
        "compileall": "passed",
        "django-check": "passed",
        "pytest": "passed",
        "tree-unchanged": "passed",
    }
    r = run_release("--config", cfg, "--json", "rollback")
    assert r.returncode == 0, r.stderr
    assert not root.exists(), "create_root's root went with the last release"


def test_a_plain_app_without_a_version_names_both_ways_out(tmp_path: Path) -> None:
    repo = django_app(tmp_path / "site")
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "mysite"}, bundle={"artifacts": []})
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 2
    assert "no build backend" in cp.stderr and "version_from" in cp.stderr and "source.subdir" in cp.stderr
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "mysite"}, bundle={"artifacts": ["wheel"], "version": "2.4.0"})
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 2 and "artifacts = []" in cp.stderr
    assert listing(tmp_path / "bundles") == [] if (tmp_path / "bundles").exists() else True


def test_a_poetry_projects_test_group_runs_the_smoke(tmp_path: Path) -> None:
    path = tmp_path / "poetic"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["poetry-core>=1.9"]\nbuild-backend = "poetry.core.masonry.api"\n'
        '[tool.poetry]\nname = "poetic"\nversion = "1.3.0"\ndescription = ""\nauthors = ["A <a@example.com>"]\n'
        '[tool.poetry.dependencies]\npython = "^3.9"\npackaging = ">=23"\n'
        '[tool.poetry.group.test.dependencies]\npytest = "^8.0"\n',
    )
    repo.write("poetic/__init__.py", "import packaging\n__version__ = '1.3.0'\n")
    repo.write("tests/test_it.py", "import poetic\n\ndef test_version():\n    assert poetic.__version__ == '1.3.0'\n")
    repo.commit("poetry project")
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "poetic"},
        bundle={"artifacts": ["wheel"]},
        environment={"groups": ["test"]},
        target={"root": str(tmp_path / "srv"), "create_root": True},
        checks=[{"kind": "pytest", "args": ["tests", "-q", "-p", "no:cacheprovider"], "expect_passed": 1}],
    )
    assert run_release("--config", cfg, "bundle").returncode == 0
    d = run_release("--config", cfg, "deploy", "--no-plan")
    assert d.returncode == 0, d.stderr
    s = run_release("--config", cfg, "--json", "smoke")
    assert s.returncode == 0, s.stdout + s.stderr
    assert run_release("--config", cfg, "rollback").returncode == 0
