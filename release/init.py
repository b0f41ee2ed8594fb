"""Stage ``init``: write a first configuration for the project in the current folder.

It looks at the project as it is (``pyproject.toml``: its name, build backend and test
dependencies; its top-level packages; a ``tests/`` folder or a pytest configuration
(``pytest.ini``, ``[tool.pytest.ini_options]``, ``setup.cfg``'s ``[tool:pytest]``,
``tox.ini``'s ``[pytest]``: without a ``tests/`` folder, its ``testpaths`` say where the
tests are); a Django ``manage.py``; ``requirements*.txt``) and writes ``release.toml``
beside it: the target a placeholder under ``.release/sandbox`` (a first ``bundle deploy smoke`` runs on this machine, into a
sandbox), the smoke checks its layout suggests. ``.release/`` is added to
``.gitignore``. Nothing is overwritten: an existing ``release.toml`` or
``[tool.release]`` is exit 4 naming it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from . import tomlinput
from .errors import ConfigError, RefusedError
from .stage import Options, StageResult

MAX_PYPROJECT = 1 << 20
_SKIP = {"tests", "test", "docs", "doc", "examples", "example", "scripts", "build", "dist", "venv", ".venv", "env", "node_modules", "migrations"}


def _q(value: str) -> str:
    """A TOML basic string."""
    import json

    return json.dumps(value, ensure_ascii=False)


def _read_pyproject(folder: Path) -> dict[str, Any]:
    path = folder / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        raw = f.read(MAX_PYPROJECT + 1)
    try:
        return tomlinput.parse(raw, MAX_PYPROJECT)
    except tomlinput.TomlInputError as exc:
        raise ConfigError(f"{path} {exc}", hint="fix it first, or write release.toml by hand") from None


MAX_SETUP = 1 << 20  # bytes of setup.py / setup.cfg read
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")  # a distribution name (PEP 508)


def _small_text(path: Path) -> str:
    """A project file's text, '' when absent, a link, not UTF-8 or larger than ``MAX_SETUP``."""
    if path.is_symlink() or not path.is_file():
        return ""
    with path.open("rb") as f:
        raw = f.read(MAX_SETUP + 1)
    try:
        return raw.decode() if len(raw) <= MAX_SETUP else ""
    except UnicodeDecodeError:
        return ""


def _setuptools_facts(folder: Path) -> tuple[str, list[str]]:
    """A setuptools project's name and extras, read, never run: ``setup.cfg`` ([metadata]
    name, [options.extras_require]), else a ``setup(name=..., extras_require={...})`` call in
    ``setup.py`` whose values are literals. ('', []) where neither says."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read_string(_small_text(folder / "setup.cfg"))
    except configparser.Error:
        cfg = configparser.ConfigParser()
    name = cfg.get("metadata", "name", fallback="").strip()
    extras = list(cfg["options.extras_require"]) if cfg.has_section("options.extras_require") else []
    if not name or not extras:
        py_name, py_extras = _setup_py_literals(_small_text(folder / "setup.py"))
        name, extras = name or py_name, extras or py_extras
    return (name if _NAME.fullmatch(name) else ""), [e for e in extras if _NAME.fullmatch(e)]


def _setup_py_literals(text: str) -> tuple[str, list[str]]:
    import ast

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # not Python, NUL bytes, nesting past the parser
        return "", []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "setup":
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            name = kw.get("name")
            extras = kw.get("extras_require")
            return (
                name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "",
                [k.value for k in extras.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)] if isinstance(extras, ast.Dict) else [],
            )
    return "", []


def _packages(folder: Path) -> list[str]:
    """Top-level import packages: ``src/<pkg>/__init__.py`` or ``<pkg>/__init__.py``."""
    found: list[str] = []
    for base in (folder / "src", folder):
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir(), key=lambda p: p.name):
            if entry.name in _SKIP or entry.name.startswith((".", "_")) or not entry.name.isidentifier():
                continue
            if entry.is_dir() and not entry.is_symlink() and (entry / "__init__.py").is_file():
                found.append(entry.name)
        if found:
            return found[:5]
    return found


def _test_groups(pyproject: dict[str, Any]) -> list[str]:
    groups = pyproject.get("dependency-groups", {})
    poetry = pyproject.get("tool", {}).get("poetry", {})
    named = {**poetry.get("group", {}), **({"dev": {}} if "dev-dependencies" in poetry else {})}  # Poetry's legacy table is the group "dev"
    return [g for g in ("test", "tests", "testing", "dev") if g in groups or g in named][:1]


def _test_extras(extras: Any) -> list[str]:
    return [e for e in ("test", "tests", "testing") if e in extras][:1]


def _in_repository(folder: Path) -> tuple[str, str]:
    """``source.repo`` and ``source.subdir`` for the project in ``folder``: ('.', '') at the
    top of its git repository (or outside any); for a project in a monorepo's ``apps/site``,
    the repository's top relative to it ('../..') and 'apps/site'."""
    from . import proc
    from .errors import ReleaseError

    try:
        cp = proc.run(["git", "-C", str(folder), "rev-parse", "--show-cdup", "--show-prefix"], check=False, timeout=30)
    except ReleaseError:  # no git here (bundle will say so): the folder is taken as the project's top
        return ".", ""
    lines = cp.out.split("\n") if cp.returncode == 0 else []
    up, prefix = (lines[0].strip().rstrip("/"), lines[1].strip().rstrip("/")) if len(lines) >= 2 else ("", "")
    if not prefix or not up or any(ch in up + prefix for ch in "\r\0") or set(up.split("/")) != {".."}:
        return ".", ""
    return up, prefix


def _pytest_config(folder: Path, pyproject: dict[str, Any]) -> str:
    """The file that configures pytest for the project, '' when none does (its ``testpaths``
    then say where the tests are: a Django app's ``polls/tests.py`` has no ``tests/``)."""
    import configparser

    if isinstance(pyproject.get("tool", {}).get("pytest", {}).get("ini_options"), dict):
        return "pyproject.toml"
    for name, section in (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            continue
        if name in ("pytest.ini", ".pytest.ini"):
            return name  # pytest takes these even without a [pytest] section
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            ini.read_string(_small_text(path))
        except configparser.Error:
            continue
        if ini.has_section(section):
            return name
    return ""


def _requirements(folder: Path) -> list[str]:
    names = ["requirements.txt", "requirements/base.txt", "requirements-test.txt", "requirements-tests.txt", "requirements-dev.txt", "requirements/test.txt"]
    names += ["requirements/tests.txt", "test-requirements.txt"]  # requirements/tests.txt: the Pallets projects (pip-compile's output)
    return [n for n in names if (folder / n).is_file() and not (folder / n).is_symlink()]


def render(folder: Path) -> tuple[str, dict[str, Any]]:
    """The configuration for the project in ``folder`` and what was detected."""
    pyproject = _read_pyproject(folder)
    project = pyproject.get("project", {})
    poetry = pyproject.get("tool", {}).get("poetry", {})
    backend = str(pyproject.get("build-system", {}).get("build-backend", "")) or ("setuptools (setup.py)" if (folder / "setup.py").is_file() else "")
    st_name, st_extras = _setuptools_facts(folder) if "setuptools" in backend else ("", [])
    name = str(project.get("name") or poetry.get("name") or st_name or re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-.") or "app")
    packaged = bool(backend)
    packages = _packages(folder)
    django = (folder / "manage.py").is_file()
    tests = next((t for t in ("tests", "test") if (folder / t).is_dir() and not (folder / t).is_symlink()), "")
    pytest_config = _pytest_config(folder, pyproject)
    reqs = _requirements(folder)
    groups = _test_groups(pyproject)
    extras = _test_extras(project.get("optional-dependencies", {}) if "optional-dependencies" in project else st_extras)
    found: dict[str, Any] = {"name": name, "backend": backend or "none (a plain application)", "packages": packages}
    found.update(django=django, tests=tests, pytest_config=pytest_config, requirements=reqs)
    found["repo"], found["subdir"] = _in_repository(folder)
    lines = [
        "# written by `release init`: review it, then `release plan`",
        f"name = {_q(name)}",
        "",
        "[source]",
        f"repo = {_q(found['repo'])}" + ("  # the top of the repository that holds this project" if found["subdir"] else ""),
        'head = "HEAD"  # the commit a release is made of (a branch, tag or sha)',
        *([f"subdir = {_q(found['subdir'])}  # the project's folder in its repository"] if found["subdir"] else []),
        "",
        "[bundle]",
    ]
    if not packaged:
        lines += ['version_from = "git-tag"  # a plain application: the nearest tag (or version = "1.0.0")', "artifacts = []"]
    else:
        lines.append('artifacts = ["sdist", "wheel"]')
    env: list[str] = []
    if extras:
        env.append(f"extras = [{_q(extras[0])}]")
    if groups:
        env.append(f"groups = [{_q(groups[0])}]")
    if reqs:
        env.append("requirements = [" + ", ".join(_q(r) for r in reqs) + "]")
    if env or packaged:
        lines += ["", "# the release carries its own locked environment, built offline into <release>/.venv", "[environment]", *env]
    lines += [
        "",
        "[target]",
        'host = ""  # "" is this machine; an ssh destination (user@host) for a server',
        'root = ".release/sandbox/srv/' + re.sub(r"[^A-Za-z0-9._-]", "-", name) + '"  # placeholder: where releases go on the target',
        'dir = "{name}-v{version}"',
        'strategy = "timestamped"',
        "create_root = true",
        "",
        "[[smoke.check]]",
        'kind = "compileall"',
    ]
    if packages:
        lines += ["", "[[smoke.check]]", 'kind = "import"', "modules = [" + ", ".join(_q(p) for p in packages) + "]"]
    if django:
        lines += ["", "[[smoke.check]]", 'kind = "command"', 'name = "django-check"', 'argv = ["{python}", "manage.py", "check"]']
    found["pytest_check"] = bool((tests or pytest_config) and (groups or extras or reqs))
    if found["pytest_check"]:
        # the tests folder (the installed release is what is tested: a configuration's
        # testpaths may add the package's own sources, httpie's doctests); without one, the
        # configuration's testpaths decide (a Django app's polls/tests.py)
        where = f"{_q(tests + '/')}, " if tests else ""
        lines += ["", "[[smoke.check]]", 'kind = "pytest"', f"args = [{where}" + '"-q"]']
    return "\n".join(lines) + "\n", found


MAX_GITIGNORE = 4 << 20  # bytes of an existing .gitignore read to see whether it ignores .release/


def _gitignore_needs(folder: Path) -> str | None:
    """What ``.gitignore`` needs appended for ``.release/`` ('' when it already ignores it),
    read before anything is written: a link, a folder, a FIFO (an open for writing would
    wait for a reader forever) or a file too large is refused, naming it."""
    path = folder / ".gitignore"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ".release/\n"
    except OSError as exc:
        what = "a link" if path.is_symlink() else f"not readable ({exc.strerror})"
        raise RefusedError(f"{path} is {what}: nothing was written", hint="add .release/ to it by hand, then run `release init` again") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedError(f"{path} is not a regular file: nothing was written", hint="move it away, then run `release init` again")
        raw = os.read(fd, MAX_GITIGNORE + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_GITIGNORE:
        raise RefusedError(f"{path} is larger than {MAX_GITIGNORE >> 20} MiB: nothing was written", hint="add .release/ to it by hand")
    if any(line.strip() in (b".release", b".release/", b"/.release", b"/.release/") for line in raw.splitlines()):
        return ""
    return ("" if not raw or raw.endswith(b"\n") else "\n") + ".release/\n"


def _gitignore_append(folder: Path, text: str) -> None:
    fd = os.open(folder / ".gitignore", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was read
            raise RefusedError(f"{folder / '.gitignore'} is not a regular file: not written", hint="add .release/ to it by hand")
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _tests_said(found: dict[str, Any]) -> str:
    parts = [f"{found['tests']}/"] if found["tests"] else []
    if found["pytest_config"]:
        parts.append(f"pytest configured in {found['pytest_config']}")
    return ", ".join(parts) or "none found"


def _pytest_said(found: dict[str, Any]) -> str:
    if found["pytest_check"]:
        return " (pytest check added)"
    return " (no pytest check: no test dependencies found; name them in [environment] extras, groups or requirements, then add one)"


def cli(cfg: None, options: Options) -> StageResult:
    folder = Path.cwd()
    target = folder / "release.toml"
    if target.exists() or target.is_symlink():
        raise RefusedError(f"{target} exists: never overwritten", hint="edit it, or move it away and run `release init` again")
    if "release" in _read_pyproject(folder).get("tool", {}):
        raise RefusedError(f"{folder / 'pyproject.toml'} already has [tool.release]", hint="edit it; `release init` writes a new configuration only")
    text, found = render(folder)
    from . import config

    config.parse(tomllib.loads(text), target)  # what is written is a valid configuration, or nothing is written
    append = _gitignore_needs(folder)  # checked before release.toml is written: a .gitignore it cannot add to stops both
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    ignored = bool(append)
    if append:
        _gitignore_append(folder, append)
    summary = [
        f"wrote {target}",
        f"  project: {found['name']} (build backend: {found['backend']})",
        f"  import check: {', '.join(found['packages']) or 'none found'}",
        f"  tests: {_tests_said(found)}" + (_pytest_said(found) if found["tests"] or found["pytest_config"] else ""),
        ("added .release/ to .gitignore" if ignored else ".gitignore already ignores .release/"),
        "next: review release.toml (target.root is a placeholder), commit, then `release plan`",
    ]
    return StageResult({"stage": "init", "config": str(target), "detected": found, "gitignore_updated": ignored}, "\n".join(summary))
