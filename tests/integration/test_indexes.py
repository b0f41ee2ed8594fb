"""Package indexes are untrusted input: real HTTP indexes (PEP 503, basic auth) in the
test, an impostor of the same name and version on a second index, a lock whose pinned
wheel the index does not serve (only an sdist that runs code when built)."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from .. import pyindex
from ..support import Repo, git, need, run_release, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PRIV = "zz-release-test-privpkg"
PRIV_MOD = PRIV.replace("-", "_")


def app_with(path: Path, deps: str, files: dict[str, str] | None = None) -> Repo:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        f'[project]\nname = "idxapp"\nversion = "1.0.0"\ndependencies = [{deps}]\n[tool.hatch.build.targets.wheel]\npackages = ["idxapp"]\n',
    )
    repo.write("idxapp/__init__.py", "__version__ = '1.0.0'\n")
    for rel, text in (files or {}).items():
        repo.write(rel, text)
    repo.commit("idxapp")
    return repo


def config(tmp_path: Path, repo: Repo, environment: dict[str, Any] | None = None, checks: list[dict[str, Any]] | None = None) -> Path:
    """The app's configuration; ``environment={}`` resolves for this machine's own Python."""
    return write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "idxapp"},
        bundle={"artifacts": ["wheel"]},
        target={"root": str(tmp_path / "target"), "create_root": True},
        environment={"python": "3.11", "platforms": ["manylinux_2_36_x86_64", "linux_x86_64"]} if environment is None else environment,
        **({"checks": checks} if checks else {}),
    )


def env_packages(stdout: str) -> dict[str, Any]:
    with tarfile.open(json.loads(stdout)["bundle"]) as tf:
        member = next(m for m in tf if m.name.endswith("/BUNDLE-MANIFEST.json") and m.name.count("/") == 1)
        f = tf.extractfile(member)
        assert f is not None
        return {p["name"]: p for p in json.loads(f.read())["environment"]["packages"]}


@pytest.fixture(scope="module")
def build_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return pyindex.build_requirements(tmp_path_factory.mktemp("build-requirements"))


@pytest.fixture(scope="module")
def setuptools_wheels(tmp_path_factory: pytest.TempPathFactory, build_wheels: list[Path]) -> list[Path]:
    """The build requirements and setuptools (an sdist with a setup.py builds with it)."""
    import subprocess
    import sys

    cache = tmp_path_factory.mktemp("setuptools")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--dest", str(cache), "setuptools"], capture_output=True, text=True
    )
    need(got.returncode == 0, f"cannot download setuptools: {got.stderr[-300:]}")
    return [*build_wheels, *sorted(cache.glob("*.whl"))]


def mirror(folder: Path, wheels: list[Path]) -> Path:
    """A private index's folder that also mirrors the build requirements (as a real one does)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        shutil.copy(w, folder / w.name)
    return folder


@pytest.mark.parametrize("how", ["url-credentials", "named-index-credentials", "no-credentials"])
def test_one_index_configuration_serves_resolver_and_downloader(tmp_path: Path, how: str, build_wheels: list[Path]) -> None:
    """The private index (its private package behind basic auth when credentials are given)
    holds the package; a second index, which pip alone would also read
    (PIP_EXTRA_INDEX_URL), holds an impostor of the same name and version. The release
    carries the private wheel, byte for byte; the impostor's index is never asked for it;
    the password is never printed. The app's own build gets the same index without the
    credentials (its build requirements come from the mirror, never from elsewhere)."""
    real = pyindex.wheel(mirror(tmp_path / "private", build_wheels), PRIV_MOD, "1.0", "WHO = 'private'\n")
    pyindex.wheel(tmp_path / "public", PRIV_MOD, "1.0", "WHO = 'impostor'\n")
    password = "s3cret-index-pw"
    auth = None if how == "no-credentials" else ("deployer", password)
    with pyindex.serve(tmp_path / "private", auth, protect=PRIV_MOD) as private, pyindex.serve(tmp_path / "public") as public:
        env = {"PIP_EXTRA_INDEX_URL": public.url}
        if how == "url-credentials":
            env["UV_DEFAULT_INDEX"] = private.url.replace("http://", f"http://deployer:{password}@")
        elif how == "named-index-credentials":
            env.update(UV_DEFAULT_INDEX=f"priv={private.url}", UV_INDEX_PRIV_USERNAME="deployer", UV_INDEX_PRIV_PASSWORD=password)
        else:
            env["UV_DEFAULT_INDEX"] = private.url
        repo = app_with(tmp_path / "app", f'"{PRIV}==1.0"')
        cp = run_release("--config", config(tmp_path, repo), "--json", "bundle", env=env)
        assert cp.returncode == 0, cp.stderr[-3000:]
        assert password not in cp.stdout + cp.stderr
        got = env_packages(cp.stdout)[PRIV_MOD.replace("_", "-")] if PRIV_MOD.replace("_", "-") in env_packages(cp.stdout) else env_packages(cp.stdout)[PRIV]
        assert got["sha256"] == pyindex.sha256(real), "the private wheel, not the impostor"
        assert not [r for r in public.requests if PRIV_MOD.replace("_", "-") in r.replace("_", "-")], public.requests


def test_a_pip_only_index_configuration_is_given_to_the_resolver_too(tmp_path: Path, build_wheels: list[Path]) -> None:
    """Only pip's variable names the private index (PIP_INDEX_URL), no uv variable: uv is
    given the same index (it once resolved from PyPI, where the name is someone else's)."""
    real = pyindex.wheel(mirror(tmp_path / "private", build_wheels), PRIV_MOD, "1.0", "WHO = 'private'\n")
    with pyindex.serve(tmp_path / "private") as private:
        repo = app_with(tmp_path / "app", f'"{PRIV}==1.0"')
        cp = run_release("--config", config(tmp_path, repo), "--json", "bundle", env={"PIP_INDEX_URL": private.url})
        assert cp.returncode == 0, cp.stderr[-3000:]
        assert next(iter(v for k, v in env_packages(cp.stdout).items() if k.replace("_", "-") == PRIV))["sha256"] == pyindex.sha256(real)


def test_a_lock_pin_without_a_wheel_is_refused_and_no_sdist_is_ever_built(tmp_path: Path, build_wheels: list[Path]) -> None:
    """pylock.toml pins a wheel by hash; the index serves only an sdist whose setup.py would
    leave a marker (with the operator's HOME and agent socket) when built. Refused (exit 4)
    naming the package; nothing was built."""
    marker = tmp_path / "sdist-ran"
    pyindex.sdist(
        mirror(tmp_path / "index", build_wheels),
        "evilpkg",
        "1.0",
        f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='evilpkg', version='1.0')\n",
    )
    lock = (
        'lock-version = "1.0"\ncreated-by = "hand"\n[[packages]]\nname = "evilpkg"\nversion = "1.0"\n'
        f'[[packages.wheels]]\nname = "evilpkg-1.0-py3-none-any.whl"\nhashes = {{sha256 = "{"ab" * 32}"}}\n'
    )
    with pyindex.serve(tmp_path / "index") as index:
        repo = app_with(tmp_path / "app", '"evilpkg==1.0"', {"pylock.toml": lock})
        cp = run_release("--config", config(tmp_path, repo), "bundle", env={"UV_DEFAULT_INDEX": index.url, "PIP_NO_BUILD_ISOLATION": "0"})
    assert cp.returncode == 4, (cp.returncode, cp.stderr[-3000:])
    assert "evilpkg" in cp.stderr and "never built" in cp.stderr, cp.stderr[-3000:]
    assert not marker.exists(), "the sdist's setup.py ran"


def test_a_dependency_with_only_an_sdist_is_built_from_it_hash_checked_and_runs(tmp_path: Path, build_wheels: list[Path]) -> None:
    """The index serves only an sdist of a dependency (as PyPI does for flasgger, which
    httpie's tests need): it is built here from the sdist the resolver's hash verified, the
    wheel built is the one the environment installs (before: the retried download refused
    it, its hash not the sdist's, as "tampered"), and a second bundle builds the same bytes."""
    index_dir = mirror(tmp_path / "index", build_wheels)
    pyproject = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n[project]\nname = "sdistonly"\nversion = "1.0"\n'
    pyindex.sdist(index_dir, "sdistonly", "1.0", "", files={"pyproject.toml": pyproject, "sdistonly/__init__.py": "WHO = 'built from its sdist'\n"})
    with pyindex.serve(index_dir) as index:
        repo = app_with(tmp_path / "app", '"sdistonly==1.0"')
        check = {
            "kind": "command",
            "name": "dep",
            "argv": ["{python}", "-c", "import sdistonly; print(sdistonly.WHO)"],
            "expect_output": "built from its sdist",
        }
        cfg = config(tmp_path, repo, environment={}, checks=[check])
        env = {"UV_DEFAULT_INDEX": index.url}
        first = run_release("--config", cfg, "--json", "bundle", env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        built = env_packages(first.stdout)["sdistonly"]
        assert built["sha256"] != pyindex.sha256(index_dir / "sdistonly-1.0.tar.gz")
        time.sleep(1.05)  # bundles are named to the second
        again = run_release("--config", cfg, "--json", "bundle", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert env_packages(again.stdout)["sdistonly"]["sha256"] == built["sha256"], "the same sdist builds the same wheel"
    deploy = run_release("--config", cfg, "deploy", "--no-plan")
    assert deploy.returncode == 0, deploy.stderr[-3000:]
    smoke = run_release("--config", cfg, "--json", "smoke")
    assert smoke.returncode == 0, smoke.stdout[-3000:]
    assert run_release("--config", cfg, "rollback").returncode == 0


def test_an_sdist_whose_hash_the_index_misstates_is_never_built(tmp_path: Path, build_wheels: list[Path]) -> None:
    """The index lists an sdist-only dependency with a sha256 that its file does not have
    (a swapped file): nothing is built from it (its setup.py would leave a marker), exit 4."""
    marker = tmp_path / "sdist-ran"
    index_dir = mirror(tmp_path / "index", build_wheels)
    setup_py = f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='swapped', version='1.0')\n"
    path = pyindex.sdist(index_dir, "swapped", "1.0", setup_py)
    with pyindex.serve(index_dir, misstate={path.name: "ab" * 32}) as index:
        repo = app_with(tmp_path / "app", '"swapped==1.0"')
        cp = run_release("--config", config(tmp_path, repo), "bundle", env={"UV_DEFAULT_INDEX": index.url})
    assert cp.returncode in (3, 4), (cp.returncode, cp.stderr[-3000:])
    assert "swapped" in cp.stderr, cp.stderr[-3000:]
    assert not marker.exists(), "an sdist whose hash did not match was built"


def test_a_dependency_that_needs_a_newer_patch_release_of_the_targets_python_is_taken(tmp_path: Path, build_wheels: list[Path]) -> None:
    """A wheel that requires the target's own patch release (soupsieve 2.8 requires
    >=3.11.5; a 3.11.7 target): the downloader is given the target's full version, as the
    resolver is (before: pip judged it against 3.11.0 and refused what uv had chosen)."""
    import sys

    micro = sys.version_info.micro
    need(micro > 0, "this Python is an x.y.0 release")
    full = f"{sys.version_info.major}.{sys.version_info.minor}.{micro}"
    pyindex.wheel(mirror(tmp_path / "index", build_wheels), "needspatch", "1.0", requires_python=f">={full}")
    with pyindex.serve(tmp_path / "index") as index:
        repo = app_with(tmp_path / "app", '"needspatch==1.0"')
        cfg = config(tmp_path, repo, environment={})
        cp = run_release("--config", cfg, "--json", "bundle", env={"UV_DEFAULT_INDEX": index.url})
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "needspatch" in env_packages(cp.stdout)


def test_an_sdist_dependencys_build_never_sees_the_operators_home_or_ssh_agent(tmp_path: Path, setuptools_wheels: list[Path]) -> None:
    """An sdist-only dependency's setup.py runs twice on the controller: when the resolver
    reads its metadata (uv builds it) and when its wheel is built. Both times with a private
    HOME and no ssh agent (before: uv's build ran with the operator's HOME and agent socket)."""
    index_dir = mirror(tmp_path / "index", setuptools_wheels)
    seen = tmp_path / "seen.jsonl"
    setup_py = (
        f"import json, os\nopen({str(seen)!r}, 'a').write(json.dumps([os.environ.get('HOME'), os.environ.get('SSH_AUTH_SOCK')]) + '\\n')\n"
        "from setuptools import setup\nsetup(name='probe', version='1.0', py_modules=[])\n"
    )
    pyindex.sdist(index_dir, "probe", "1.0", setup_py)
    with pyindex.serve(index_dir) as index:
        repo = app_with(tmp_path / "app", '"probe==1.0"')
        cp = run_release("--config", config(tmp_path, repo), "bundle", env={"UV_DEFAULT_INDEX": index.url, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")})
    assert cp.returncode == 0, cp.stderr[-3000:]
    runs = [json.loads(line) for line in seen.read_text().splitlines()]
    assert runs, "the sdist was never built"
    assert all(home != os.path.expanduser("~") and "release-build-home-" in home and not agent for home, agent in runs), runs


def test_an_sdist_that_builds_a_wheel_of_another_name_is_refused(tmp_path: Path, setuptools_wheels: list[Path]) -> None:
    """The index lists `decoy` 1.0 (sdist only, its hash true); its setup.py names itself
    `decoy` when the resolver reads its metadata, but `idxapp-helper` 9.9 when pip builds
    the wheel (pip's build tracker in its environment tells them apart): the bundle stops
    naming it, and nothing of it is used (pip discards a build whose metadata names another
    project; the tool checks the wheel's name and version itself too:
    tests/unit/test_requirements.py)."""
    index_dir = mirror(tmp_path / "index", setuptools_wheels)
    setup_py = (
        "import os\nfrom setuptools import setup\n"
        "real = 'PIP_BUILD_TRACKER' in os.environ\n"
        "setup(name='idxapp-helper' if real else 'decoy', version='9.9' if real else '1.0', py_modules=[])\n"
    )
    pyindex.sdist(index_dir, "decoy", "1.0", setup_py)
    with pyindex.serve(index_dir) as index:
        repo = app_with(tmp_path / "app", '"decoy==1.0"')
        cp = run_release("--config", config(tmp_path, repo, environment={}), "bundle", env={"UV_DEFAULT_INDEX": index.url})
    assert cp.returncode in (3, 4), (cp.returncode, cp.stderr[-3000:])
    assert "decoy" in cp.stderr and not list((repo.path / ".release").glob("bundles/*.tar.gz")), cp.stderr[-3000:]
