"""`release init` reads a setuptools project's name and test extras from setup.cfg and from a
literal ``setup(...)`` call in setup.py, never running either: a setup.py that would act,
one nested past the parser, NUL bytes, a file too large, a link, not UTF-8 or a name that is
no distribution name give nothing (the folder's name, no extras), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from release import init


def _project(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path


def test_setup_cfg_name_and_extras(tmp_path: Path) -> None:
    cfg = "[metadata]\nname = httpie\n[options.extras_require]\ndev =\n\tpytest\ntest =\n\tpytest\n\tresponses\n"
    assert init._setuptools_facts(_project(tmp_path, {"setup.cfg": cfg, "setup.py": "from setuptools import setup\nsetup()\n"})) == ("httpie", ["dev", "test"])


def test_setup_py_literals(tmp_path: Path) -> None:
    py = 'import setuptools\nsetuptools.setup(\n    name="datasette",\n    extras_require={"docs": ["sphinx"], "test": ["pytest"]},\n)\n'
    assert init._setuptools_facts(_project(tmp_path, {"setup.py": py})) == ("datasette", ["docs", "test"])


def test_a_setup_py_is_read_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    py = f"open({str(marker)!r}, 'w').write('x')\nfrom setuptools import setup\nsetup(name=NAME, extras_require=dict(test=[]))\n"
    assert init._setuptools_facts(_project(tmp_path, {"setup.py": py})) == ("", [])
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [
        "x = " + "[" * 5000 + "]" * 5000 + "\nsetup(name='deep')\n",  # past the parser's nesting
        b"setup(name='nul')\x00\n",
        b"setup(name='\xff\xfe')\n",  # not UTF-8
        "setup(name='big')\n" + "#" * (init.MAX_SETUP + 1),
        "setup(name='../../etc')\n",  # no distribution name
        "setup(name='a b')\n",
        "def broken(:\n",
    ],
    ids=["deep", "nul", "not-utf8", "too-large", "path-name", "space-name", "syntax"],
)
def test_hostile_setup_py_gives_nothing(tmp_path: Path, content: str | bytes) -> None:
    assert init._setuptools_facts(_project(tmp_path, {"setup.py": content})) == ("", [])


def test_a_linked_setup_cfg_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.cfg"
    elsewhere.write_text("[metadata]\nname = linked\n")
    os.symlink(elsewhere, tmp_path / "setup.cfg")
    assert init._setuptools_facts(tmp_path) == ("", [])


def test_a_broken_setup_cfg_falls_back_to_setup_py(tmp_path: Path) -> None:
    project = _project(tmp_path, {"setup.cfg": "no section header\n[[[", "setup.py": "setup(name='fallback')\n"})
    assert init._setuptools_facts(project) == ("fallback", [])


def test_render_uses_them_and_says_whether_a_pytest_check_was_added(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    _project(tmp_path, {"setup.py": "setup(name='pkgapp', extras_require={'test': ['pytest']})\n"})
    text, found = init.render(tmp_path)
    assert 'name = "pkgapp"' in text and 'extras = ["test"]' in text and 'kind = "pytest"' in text and found["pytest_check"] is True
    (tmp_path / "setup.py").write_text("setup(name='pkgapp')\n")
    text, found = init.render(tmp_path)
    assert 'kind = "pytest"' not in text and found["pytest_check"] is False
    assert "no pytest check" in init._pytest_said(found)


def test_poetrys_legacy_dev_dependencies_are_the_dev_group(tmp_path: Path) -> None:
    """rich 13.9.4's pyproject.toml: [tool.poetry.dev-dependencies] (pytest among them)."""
    (tmp_path / "tests").mkdir()
    pyproject = '[tool.poetry]\nname = "rich"\n[tool.poetry.dev-dependencies]\npytest = "^7.0.0"\n'
    pyproject += '[build-system]\nrequires = ["poetry-core>=1.0.0"]\nbuild-backend = "poetry.core.masonry.api"\n'
    _project(tmp_path, {"pyproject.toml": pyproject})
    text, found = init.render(tmp_path)
    assert 'groups = ["dev"]' in text and found["pytest_check"] is True


def test_pallets_requirements_tests_txt_is_found(tmp_path: Path) -> None:
    """markupsafe 3.0.2 (and the other Pallets projects): requirements/tests.txt, pinned by
    pip-compile, holds the test dependencies."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "requirements").mkdir()
    _project(
        tmp_path,
        {
            "requirements/tests.txt": "pytest==8.3.3\n",
            "pyproject.toml": '[project]\nname = "MarkupSafe"\n[build-system]\nbuild-backend = "setuptools.build_meta"\n',
        },
    )
    text, found = init.render(tmp_path)
    assert 'requirements = ["requirements/tests.txt"]' in text and found["pytest_check"] is True


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"pytest.ini": "[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\npython_files = tests.py\n"}, "pytest.ini"),
        ({"pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["polls"]\n'}, "pyproject.toml"),
        ({"setup.cfg": "[metadata]\nname = site\n\n[tool:pytest]\ntestpaths = polls\n"}, "setup.cfg"),
        ({"tox.ini": "[tox]\nenvlist = py311\n\n[pytest]\ntestpaths = polls\n"}, "tox.ini"),
    ],
)
def test_a_django_app_tested_by_its_pytest_configuration_gets_a_pytest_check(tmp_path: Path, files: dict[str, str], said: str) -> None:
    """A Django app (`startproject` + `startapp`): its tests are polls/tests.py, found by the
    pytest configuration (pytest-django), not a tests/ folder; the check lets that
    configuration's testpaths decide (no path argument)."""
    (tmp_path / "manage.py").write_text("")
    (tmp_path / "polls").mkdir()
    (tmp_path / "polls" / "__init__.py").write_text("")
    (tmp_path / "polls" / "tests.py").write_text("def test_x():\n    pass\n")
    _project(tmp_path, {"requirements.txt": "django==5.2.20\n", "requirements-dev.txt": "pytest-django==4.14.0\n", **files})
    text, found = init.render(tmp_path)
    assert found["tests"] == "" and found["pytest_config"] == said and found["pytest_check"] is True
    assert 'kind = "pytest"\nargs = ["-q"]' in text
    assert init._tests_said(found) == f"pytest configured in {said}"


def test_a_pytest_section_named_only_in_a_comment_or_a_link_is_no_configuration(tmp_path: Path) -> None:
    """Only a real section header counts, and no file is read through a link."""
    _project(tmp_path, {"tox.ini": "# [pytest] is configured elsewhere\n[tox]\n", "requirements.txt": "pytest\n"})
    (tmp_path / "pytest.ini").symlink_to("/etc/hostname")
    text, found = init.render(tmp_path)
    assert found["pytest_config"] == "" and found["pytest_check"] is False and 'kind = "pytest"' not in text


@pytest.mark.parametrize("kind", ["folder", "fifo", "link", "too large"])
def test_a_gitignore_init_cannot_add_to_stops_it_before_anything_is_written(tmp_path: Path, kind: str) -> None:
    """A `.gitignore` that is a folder (it was an IsADirectoryError traceback), a FIFO (the
    open for appending waited for a reader forever), a link, or larger than the bound: exit 4
    naming it, and no release.toml is left behind."""
    import subprocess
    import sys

    path = tmp_path / ".gitignore"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        (tmp_path / "elsewhere").write_text("")
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.write_bytes(b"a\n" * (init.MAX_GITIGNORE // 2 + 1))
    cp = subprocess.run([sys.executable, "-m", "release", "init"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 4 and str(path) in cp.stderr and "nothing was written" in cp.stderr, cp.stderr
    assert not (tmp_path / "release.toml").exists() and "Traceback" not in cp.stderr


def test_init_adds_release_to_a_gitignore_without_a_last_newline_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / ".gitignore").write_text("build")
    cp = subprocess.run([sys.executable, "-m", "release", "init"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / ".gitignore").read_text() == "build\n.release/\n"
    assert init._gitignore_needs(tmp_path) == ""


@pytest.mark.parametrize(
    ("pyproject", "args"),
    [
        ('[tool.pytest.ini_options]\ntestpaths = ["tests", "src"]\n', '["tests/", "-q"]'),  # httpie 3.2.4's: its package's doctests too
        ('[tool.pytest.ini_options]\naddopts = "-ra"\n', '["tests/", "-q"]'),  # no testpaths: the tests folder, not the whole release
    ],
)
def test_a_tests_folder_is_named_whatever_the_configuration_says(tmp_path: Path, pyproject: str, args: str) -> None:
    (tmp_path / "tests").mkdir()
    _project(tmp_path, {"pyproject.toml": '[project]\nname = "x"\n[dependency-groups]\ntests = ["pytest"]\n' + pyproject})
    text, found = init.render(tmp_path)
    assert found["pytest_check"] is True and f'kind = "pytest"\nargs = {args}' in text


def test_init_without_git_on_the_machine_still_writes_a_configuration(tmp_path: Path) -> None:
    """No git on PATH: the folder is taken as the project's top (bundle then says git is
    missing); it was a 'command not found' failure of init itself."""
    import subprocess
    import sys

    env = {"PATH": os.path.dirname(sys.executable), "HOME": str(tmp_path)}
    cp = subprocess.run([sys.executable, "-m", "release", "init"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert 'repo = "."' in (tmp_path / "release.toml").read_text()
