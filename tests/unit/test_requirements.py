"""Requirements files and Poetry groups (#22 item 3), read as untrusted input: a line that
would choose where packages come from is refused naming the file and line, includes stay
inside the project and never pass through a link, and everything is bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from release.errors import ConfigError, RefusedError
from release.source import requirements


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_requirement_lines_includes_constraints_and_hashes_are_read_as_pip_reads_them(tmp_path: Path) -> None:
    t = tree(
        tmp_path,
        {
            "requirements.txt": "# the app\nDjango>=4.2,<6  # web\n\\\n-r requirements/base.txt\n-c constraints.txt\nrequests[socks]==2.32.3 \\\n    --hash=sha256:abc\n",
            "requirements/base.txt": "packaging ; python_version >= '3.8'\n--prefer-binary\n",
            "constraints.txt": "urllib3<3\n",
        },
    )
    got = requirements.read_files(t, ("requirements.txt",))
    assert got.requirements == ["Django<6,>=4.2", 'packaging; python_version >= "3.8"', "requests[socks]==2.32.3"]
    assert got.constraints == ["urllib3<3"]
    assert got.files == ["requirements.txt", "requirements/base.txt", "constraints.txt"]


@pytest.mark.parametrize(
    "line",
    [
        "-i https://evil.example/simple",
        "--index-url=https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "-f https://evil.example/links",
        "--find-links /tmp",
        "--trusted-host evil.example",
        "-e ../other",
        "-e ./vendor/lib",
        "/opt/wheels/x",
        "--editable git+https://evil.example/x.git",
        "--no-index",
    ],
)
def test_a_line_that_chooses_where_packages_come_from_is_refused_naming_it(tmp_path: Path, line: str) -> None:
    t = tree(tmp_path, {"req/test.txt": f"pytest\n{line}\n"})
    with pytest.raises(RefusedError, match=r"req/test\.txt:2") as err:
        requirements.read_files(t, ("req/test.txt",))
    assert err.value.exit_code == 4


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("x @ https://evil.example/x.whl\n", RefusedError),
        ("git+https://evil.example/x.git\n", ConfigError),
        ("not a requirement !!\n", ConfigError),
        ("--unknown-option\n", ConfigError),
    ],
)
def test_direct_urls_and_what_pip_would_not_read_are_refused(tmp_path: Path, text: str, error: type[Exception]) -> None:
    t = tree(tmp_path, {"requirements.txt": text})
    with pytest.raises(error, match=r"requirements\.txt:1"):
        requirements.read_files(t, ("requirements.txt",))


def test_includes_stay_inside_the_project_and_never_pass_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("evil\n")
    t = tree(tmp_path / "proj", {"a.txt": "-r ../outside.txt\n", "b.txt": "-r /etc/passwd\n", "c.txt": "-r linked.txt\n", "d.txt": "-r sub/x.txt\n"})
    os.symlink(outside, t / "linked.txt")
    (t / "real").mkdir()
    (t / "real" / "x.txt").write_text("pytest\n")
    os.symlink(t / "real", t / "sub")
    for name, error in (("a.txt", ConfigError), ("b.txt", ConfigError), ("c.txt", RefusedError), ("d.txt", RefusedError)):
        with pytest.raises(error):
            requirements.read_files(t, (name,))
    with pytest.raises(RefusedError):
        requirements.read_files(t, ("linked.txt",))


def test_reading_is_bounded(tmp_path: Path) -> None:
    t = tree(tmp_path, {"loop.txt": "-r loop.txt\npytest\n"})
    assert requirements.read_files(t, ("loop.txt",)).requirements == ["pytest"], "a file read twice is read once"
    chain = {f"r{i}.txt": f"-r r{i + 1}.txt\n" for i in range(requirements.MAX_DEPTH + 2)}
    with pytest.raises(RefusedError, match="deeper than"):
        requirements.read_files(tree(tmp_path / "deep", chain), ("r0.txt",))
    big = tmp_path / "big"
    big.mkdir()
    (big / "requirements.txt").write_bytes(b"a\n" * (requirements.MAX_FILE // 2 + 1))
    with pytest.raises(RefusedError, match="larger than"):
        requirements.read_files(big, ("requirements.txt",))
    many = tmp_path / "many"
    many.mkdir()
    (many / "requirements.txt").write_text("".join(f"p{i}\n" for i in range(requirements.MAX_LINES + 1)))
    with pytest.raises(RefusedError, match="more than"):
        requirements.read_files(many, ("requirements.txt",))
    with pytest.raises(ConfigError, match="not in the recorded commit"):
        requirements.read_files(tmp_path, ("missing.txt",))


def test_poetry_groups_are_converted_as_poetry_converts_them() -> None:
    pyproject = {
        "tool": {
            "poetry": {
                "group": {"test": {"dependencies": {"pytest": "^8.0", "pytest-cov": {"version": "~5.0", "python": ">=3.9"}, "python": "^3.9"}}},
                "dev-dependencies": {"mypy": "*"},
            }
        }
    }
    assert requirements.poetry_group(pyproject, "test") == ["pytest<9.0,>=8.0", 'pytest-cov<5.1,>=5.0; python_version >= "3.9"']
    assert requirements.poetry_group(pyproject, "dev") == ["mypy"]
    assert requirements.poetry_group(pyproject, "docs") is None
    for spec in ({"git": "https://evil.example/x.git"}, {"path": "../x"}, {"url": "https://evil.example/x.whl"}):
        with pytest.raises(RefusedError, match="path, URL or VCS"):
            requirements.poetry_group({"tool": {"poetry": {"group": {"t": {"dependencies": {"x": spec}}}}}}, "t")


def test_a_poetry_dependency_with_several_constraints_is_several_requirements() -> None:
    pyproject = {
        "tool": {"poetry": {"group": {"dev": {"dependencies": {"mypy": [{"version": "^1.0", "python": "<3.8"}, {"version": "^1.5", "python": ">=3.8"}]}}}}}
    }
    assert requirements.poetry_group(pyproject, "dev") == ['mypy<2.0,>=1.0; python_version < "3.8"', 'mypy<2.0,>=1.5; python_version >= "3.8"']


@pytest.mark.parametrize(
    ("names", "pin", "ok"),
    [
        (["flasgger-0.9.7.1-py2.py3-none-any.whl"], "flasgger==0.9.7.1 --hash=sha256:00", True),
        (["Zope.Interface-6.0-py3-none-any.whl"], "zope-interface==6.0 ; python_version >= '3.8' --hash=sha256:00", True),
        (["requests-2.32.0-py3-none-any.whl"], "decoy==1.0 --hash=sha256:00", False),  # another project's name
        (["decoy-9.9-py3-none-any.whl"], "decoy==1.0 --hash=sha256:00", False),  # another version
        (["decoy-1.0-py3-none-any.whl", "extra-1.0-py3-none-any.whl"], "decoy==1.0", False),  # more than one wheel
        (["not a wheel.whl"], "decoy==1.0", False),
    ],
)
def test_a_wheel_built_from_an_sdist_must_be_the_one_pinned(tmp_path: Path, names: list[str], pin: str, ok: bool) -> None:
    from release.source.environment import _refuse_other_wheel

    wheels = [tmp_path / n for n in names]
    if ok:
        _refuse_other_wheel(wheels, pin)
    else:
        with pytest.raises(RefusedError, match="not one wheel of that name and version"):
            _refuse_other_wheel(wheels, pin)


@pytest.mark.parametrize(
    ("line", "extras"),
    [("-e .", []), ("--editable=.", []), (".", []), ("-e .[dev]", ["dev"]), ("-e .[dev, test]", ["dev", "test"]), ("./[test]", ["test"]), ("file:.", [])],
)
def test_the_project_itself_in_a_requirements_file_is_its_own_wheel_with_those_extras(tmp_path: Path, line: str, extras: list[str]) -> None:
    """`pip install -r requirements/dev.txt` with `-e .[dev]` in it (pip reads the path from the
    folder it runs in: the project's) installs the project itself: its wheel is in the
    environment already, and the extras named join environment.extras. It was refused
    (exit 4) as an editable install."""
    t = tree(tmp_path, {"requirements/dev.txt": f"pytest\n{line}\n"})
    got = requirements.read_files(t, ("requirements/dev.txt",))
    assert got.names_self is True and got.self_extras == extras and got.requirements == ["pytest"]


@pytest.mark.parametrize("line", ["-e .[dev; touch /tmp/x]", ".[dev]x", ".[dev,-x]"])
def test_an_extra_that_is_no_name_is_refused_naming_the_line(tmp_path: Path, line: str) -> None:
    t = tree(tmp_path, {"requirements.txt": f"{line}\n"})
    with pytest.raises((ConfigError, RefusedError), match=r"requirements\.txt:1"):
        requirements.read_files(t, ("requirements.txt",))
