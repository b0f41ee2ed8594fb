"""Bundle stage against real git repositories and real tarballs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from release import bundle, config

from ..support import Cli, Repo, make_project, write_config


def _bundle_files(out: Path) -> list[Path]:
    return sorted(out.glob("*.tar.gz"))


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tf:
        return {m.name.split("/", 1)[1] if "/" in m.name else "": m for m in tf.getmembers()}


def _read(path: Path, rel: str) -> bytes:
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            if m.name.split("/", 1)[-1] == rel and m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                return f.read()
    raise KeyError(rel)


def test_bundle_writes_verified_checksummed_bundle(project: Repo, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "--json", "bundle")
    assert r.code == 0, r.err
    res = r.json
    path = Path(str(res["bundle"]))
    sha = project.git("rev-parse", "HEAD")
    assert path.name.startswith(f"demo-app-0.6.0-{sha[:7]}-") and path.name.endswith("Z.tar.gz")
    # the .sha256 file is in sha256sum -c format, checked by the real tool
    cp = subprocess.run(["sha256sum", "-c", path.name + ".sha256"], cwd=path.parent, capture_output=True, text=True)
    assert cp.returncode == 0 and "OK" in cp.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == res["sha256"]
    manifest = json.loads(_read(path, "BUNDLE-MANIFEST.json"))
    assert manifest["commit"] == sha and manifest["version"] == "0.6.0" and manifest["name"] == "demo-app"
    assert manifest["build_stamp"] in path.name
    assert manifest["commit_time"] == int(project.git("show", "-s", "--format=%ct", sha))
    assert {"release", "python", "git"} <= set(manifest["builder"])
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"pyproject.toml", "demo_app/__init__.py", "demo_app/core.py", "bin/run.sh", "tests/test_core.py", "SBOM.cdx.json"}
    # the SBOM inside is the one beside; the provenance names this bundle; the checksum file lists all three
    assert _read(path, "SBOM.cdx.json") == Path(str(res["sbom"])).read_bytes()
    assert cp.stdout.count(": OK") == 3, cp.stdout
    for rel, entry in files.items():
        data = _read(path, rel)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    # one top folder named like the bundle
    tops = {m.split("/")[0] for m in (x.name for x in tarfile.open(path).getmembers())}
    assert tops == {path.name.removesuffix(".tar.gz")}
    assert not list(path.parent.glob(".*part*"))


def test_headers_are_normalised(project: Repo, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path)
    assert cli("--config", cfg, "bundle").code == 0
    path = _bundle_files(tmp_path / "bundles")[0]
    ct = int(project.git("show", "-s", "--format=%ct", "HEAD"))
    head = path.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] & 0x08 == 0, "gzip header must carry no file name"
    assert int.from_bytes(head[4:8], "little") == 0, "gzip header must carry no time"
    for rel, m in _members(path).items():
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == ct
        if m.isdir() or rel == "bin/run.sh":
            assert m.mode == 0o755
        elif m.isreg():
            assert m.mode == 0o644, rel


def test_uncommitted_and_untracked_files_never_reach_the_bundle(project: Repo, tmp_path: Path, cli: Cli) -> None:
    committed = project.git("rev-parse", "HEAD")
    project.write("demo_app/core.py", "def answer():\n    return 'DIRTY'\n")
    project.write("untracked.txt", "should not ship")
    project.git("checkout", "-q", "-b", "other")
    project.write("other_branch.py", "x = 1\n")
    project.commit("on another branch")
    project.write("demo_app/core.py", "def answer():\n    return 'DIRTY AGAIN'\n")
    cfg = write_config(tmp_path / "release.toml", project.path, source={"head": committed[:8]})
    assert cli("--config", cfg, "bundle").code == 0
    path = _bundle_files(tmp_path / "bundles")[0]
    names = set(_members(path))
    assert "untracked.txt" not in names and "other_branch.py" not in names
    assert b"DIRTY" not in _read(path, "demo_app/core.py")
    assert json.loads(_read(path, "BUNDLE-MANIFEST.json"))["commit"] == committed


def test_tag_and_full_sha_resolve_to_the_same_commit(project: Repo, tmp_path: Path) -> None:
    sha = project.git("rev-parse", "HEAD")
    project.git("tag", "v0.6.0")
    project.write("later.txt", "later")
    project.commit("later")
    for head in ("v0.6.0", sha, sha[:7]):
        cfg = config.parse(
            {"name": "demo-app", "source": {"repo": str(project.path), "head": head}, "target": {"root": "/x"}},
            tmp_path / "release.toml",
        )
        plan, _ = bundle.prepare(cfg)
        assert plan.sha == sha


def test_missing_commit_is_blocked_and_writes_nothing(project: Repo, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, source={"head": "6625f76"})
    r = cli("--config", cfg, "bundle")
    assert r.code == 3
    assert "6625f76" in r.err and str(project.path) in r.err
    assert "git bundle" in r.err and "fetch" in r.err
    assert not (tmp_path / "bundles").exists()


def test_commit_delivered_as_git_bundle_file(project: Repo, tmp_path: Path, cli: Cli) -> None:
    sha = project.git("rev-parse", "HEAD")
    gb = tmp_path / "delivery.bundle"
    project.git("bundle", "create", str(gb), "--all")
    cfg = write_config(tmp_path / "release.toml", gb, source={"head": sha})
    r = cli("--config", cfg, "--json", "bundle")
    assert r.code == 0, r.err
    assert r.json["head"] == sha


def test_not_a_git_repository_is_a_config_error(tmp_path: Path, cli: Cli) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    cfg = write_config(tmp_path / "release.toml", plain)
    r = cli("--config", cfg, "bundle")
    assert r.code == 2 and "not a git repository" in r.err and str(plain) in r.err


def test_a_repository_of_another_user_is_named_with_gits_own_reason(project: Repo, tmp_path: Path, cli: Cli) -> None:
    """An sdist unpacked as root keeps its owner's uid, as does a CI checkout made by another
    user: git refuses such a repository (safe.directory). It was "not a git repository"; it is
    blocked (exit 3) with git's reason and the way out, and nothing is written."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another user")
    for folder, _dirs, files in os.walk(project.path):
        os.chown(folder, 12345, 12345)
        for f in files:
            os.lchown(os.path.join(folder, f), 12345, 12345)
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 3 and "dubious ownership" in r.err and "safe.directory" in r.err and str(project.path) in r.err, r.err
    assert "not a git repository" not in r.err and not (tmp_path / "bundles").exists()


def test_symlink_outside_tree_is_refused(project: Repo, tmp_path: Path, cli: Cli) -> None:
    (project.path / "escape").symlink_to("../../etc/passwd")
    project.commit("hostile link")
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 4 and "escape" in r.err
    assert not _bundle_files(tmp_path / "bundles")
    assert not list((tmp_path / "bundles").glob(".*"))


def test_symlink_inside_tree_is_kept(project: Repo, tmp_path: Path, cli: Cli) -> None:
    (project.path / "link.py").symlink_to("demo_app/core.py")
    project.commit("inner link")
    cfg = write_config(tmp_path / "release.toml", project.path)
    assert cli("--config", cfg, "bundle").code == 0
    m = _members(_bundle_files(tmp_path / "bundles")[0])["link.py"]
    assert m.issym() and m.linkname == "demo_app/core.py"


def test_path_that_cannot_be_represented_is_refused(project: Repo, tmp_path: Path, cli: Cli) -> None:
    (project.path / b"bad\xffname.txt".decode("utf-8", "surrogateescape")).write_text("x")
    project.commit("non-utf8 name")
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 4 and "cannot be represented" in r.err


def test_subdir_selects_the_project(tmp_path: Path, cli: Cli) -> None:
    mono = make_project(tmp_path / "mono" / "services" / "app")
    outer = Repo(tmp_path / "mono")
    # make the outer folder the repository and the project a subfolder of it
    import shutil

    shutil.rmtree(mono.path / ".git")
    outer.git("init", "-q")
    outer.write("README.md", "monorepo")
    outer.commit("mono")
    cfg = write_config(tmp_path / "release.toml", outer.path, source={"subdir": "services/app"})
    assert cli("--config", cfg, "bundle").code == 0
    names = set(_members(_bundle_files(tmp_path / "bundles")[0]))
    assert "pyproject.toml" in names and "README.md" not in names


def test_two_builds_are_byte_identical_in_content(project: Repo, tmp_path: Path) -> None:
    cfg = config.parse(
        {"name": "demo-app", "source": {"repo": str(project.path), "head": "HEAD"}, "bundle": {"artifacts": []}, "target": {"root": "/x"}},
        tmp_path / "release.toml",
    )
    plan, src = bundle.prepare(cfg, stamp="20260101T000000Z")
    import dataclasses

    a = bundle.execute(dataclasses.replace(plan, out=tmp_path / "one"), src)
    b = bundle.execute(dataclasses.replace(plan, out=tmp_path / "two", stamp="20260102T030405Z"), src)
    assert a.path.name != b.path.name
    assert bundle.content_digest(a.path) == bundle.content_digest(b.path)
    # same stamp, different folder: the whole file is byte-identical
    c = bundle.execute(dataclasses.replace(plan, out=tmp_path / "three"), src)
    assert c.path.read_bytes() == a.path.read_bytes()
    # the decompressed tar differs only where the name/stamp differs
    assert len(gzip.decompress(a.path.read_bytes())) == len(gzip.decompress(b.path.read_bytes()))


@pytest.mark.slow
def test_artifacts_and_reproducible_check(project: Repo, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, bundle={"artifacts": ["sdist", "wheel"]})
    r = cli("--config", cfg, "--json", "bundle", "--reproducible-check")
    assert r.code == 0, r.err
    res = r.json
    assert res["reproducible"]["identical"] is True  # type: ignore[index]
    assert sorted(res["artifacts"]) == ["demo_app-0.6.0-py3-none-any.whl", "demo_app-0.6.0.tar.gz"]  # type: ignore[call-overload]
    names = set(_members(Path(str(res["bundle"]))))
    assert "dist/demo_app-0.6.0-py3-none-any.whl" in names


@pytest.mark.slow
def test_hatch_vcs_project_builds_with_the_recorded_commits_version(tmp_path: Path, cli: Cli) -> None:
    repo = make_project(tmp_path / "vcsapp")
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["hatchling", "hatch-vcs"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "vcs-app"\nrequires-python = ">=3.9"\ndynamic = ["version"]\n'
        '[tool.hatch.version]\nsource = "vcs"\n[tool.hatch.build.targets.wheel]\npackages = ["demo_app"]\n',
    )
    repo.commit("vcs version")
    repo.git("tag", "v1.2.0")
    tagged = repo.git("rev-parse", "HEAD")
    repo.write("more.txt", "x")
    after = repo.commit("after tag")
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "vcs-app"}, bundle={"artifacts": ["wheel"]}, source={"head": after})
    r = cli("--config", cfg, "--json", "bundle")
    assert r.code == 0, r.err
    assert r.json["version"] == f"1.2.1.dev1+g{after[:7]}"
    assert r.json["artifacts"] == [f"vcs_app-1.2.1.dev1+g{after[:7]}-py3-none-any.whl"]
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "vcs-app"}, bundle={"artifacts": ["wheel"]}, source={"head": tagged})
    r = cli("--config", cfg, "--json", "bundle")
    assert r.code == 0, r.err
    assert r.json["version"] == "1.2.0"


@pytest.mark.slow
def test_build_failure_is_exit_1_with_backend_error_and_no_bundle(project: Repo, tmp_path: Path, cli: Cli) -> None:
    project.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "demo-app"\nversion = "0.6.0"\ndependencies = "does_not_exist"\n',
    )
    project.commit("broken build")
    cfg = write_config(tmp_path / "release.toml", project.path, bundle={"artifacts": ["wheel"]})
    r = cli("--config", cfg, "bundle")
    assert r.code == 1
    assert "project.dependencies" in r.err  # the backend's own message
    assert not list((tmp_path / "bundles").iterdir())


def test_the_build_never_sees_the_dsn_or_other_secrets_of_the_controller(tmp_path: Path) -> None:
    """Finding 6: a build hook read the DSN variable of the CI job and shipped it in the wheel."""
    import zipfile

    from ..support import run_release

    repo = make_project(tmp_path / "app")
    repo.write(
        "hatch_build.py",
        "import os\nfrom hatchling.builders.hooks.plugin.interface import BuildHookInterface\n"
        "class CustomBuildHook(BuildHookInterface):\n"
        "    def initialize(self, version, build_data):\n"
        "        leak = ' '.join(f'{k}={v}' for k, v in os.environ.items())\n"
        "        print('BUILD-ENV', leak)\n"
        "        open(os.path.join(self.root, 'demo_app', 'leak.txt'), 'w').write(leak)\n",
    )
    text = (
        repo.path / "pyproject.toml"
    ).read_text() + "[tool.hatch.build.hooks.custom]\n[tool.hatch.build.targets.wheel.force-include]\n'demo_app/leak.txt' = 'demo_app/leak.txt'\n"
    repo.write("pyproject.toml", text)
    repo.write("demo_app/leak.txt", "")
    repo.commit("hook")
    cfg = write_config(tmp_path / "release.toml", repo.path, bundle={"artifacts": ["wheel"]})
    cfg.write_text(cfg.read_text() + '[[smoke.check]]\nkind = "db-readonly"\ndsn_env = "APP_RO_DSN"\nqueries = ["select 1"]\n')
    secret = "postgresql://ro:BuildMustNotSee99@db/app"
    cp = run_release("--config", cfg, "-v", "--json", "bundle", env={"APP_RO_DSN": secret, "AWS_SECRET_ACCESS_KEY": "AlsoHidden42"})
    assert cp.returncode == 0, cp.stderr
    assert "BuildMustNotSee99" not in cp.stdout + cp.stderr and "AlsoHidden42" not in cp.stdout + cp.stderr
    bundle_path = Path(json.loads(cp.stdout)["bundle"])
    import tarfile as _tarfile

    with _tarfile.open(bundle_path) as tf:
        wheel = next(m for m in tf if m.name.endswith(".whl"))
        data = tf.extractfile(wheel).read()  # type: ignore[union-attr]
    (tmp_path / "w.whl").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "w.whl") as zf:
        leak = zf.read("demo_app/leak.txt").decode()
    assert "PATH=" in leak, "the hook ran and wrote its environment"
    assert "APP_RO_DSN" not in leak and "BuildMustNotSee99" not in leak and "AlsoHidden42" not in leak


def test_the_bundle_holds_the_committed_blobs_whatever_gits_configuration(project: Repo, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``git archive`` would run the filter drivers (clean/smudge, and the long-running
    ``process`` filter of Git LFS) that the repository's or the machine's git configuration
    defines, and apply the machine's line endings and global attributes. None of it reaches
    a bundle: no configured program runs, and every file ships as committed."""
    planted = tmp_path / "planted"
    project.write(".gitattributes", "*.py filter=evil\n*.txt filter=lfs\n*.cfg filter=we=ird\nsubst.md export-subst\n")
    project.write("notes.txt", "line one\nline two $Format:%H$\n")
    project.write("app.cfg", "[x]\n")
    project.write("subst.md", "commit $Format:%H$\n")
    sha = project.commit("attributes")
    home = tmp_path / "home"
    home.mkdir()
    (home / "attributes").write_text("*.txt export-subst\n")
    (home / ".gitconfig").write_text(
        f"[core]\n\tautocrlf = true\n\tattributesFile = {home / 'attributes'}\n"
        f"[filter \"lfs\"]\n\tprocess = sh -c 'touch {planted}-lfs'\n\tsmudge = sh -c 'touch {planted}-lfs; cat'\n\trequired = true\n"
    )
    monkeypatch.setenv("HOME", str(home))  # the machine's git configuration (the controller passes HOME on)
    project.git("config", "filter.evil.smudge", f"sh -c 'touch {planted}-smudge; tr a-z A-Z'")
    project.git("config", "filter.evil.required", "true")
    project.git("config", "filter.we=ird.process", f"sh -c 'touch {planted}-weird'")
    cp = subprocess.run(["git", "-C", str(project.path), "archive", "HEAD", "notes.txt"], capture_output=True)
    assert list(tmp_path.glob("planted*")), "as configured, plain git archive runs the filter: the test can fail"
    for p in tmp_path.glob("planted*"):
        p.unlink()
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 0, r.err
    assert not list(tmp_path.glob("planted*")), "a configured filter program ran"
    path = _bundle_files(tmp_path / "bundles")[0]
    for rel in (".gitattributes", "notes.txt", "app.cfg", "subst.md", "demo_app/core.py", "pyproject.toml"):
        committed = subprocess.run(["git", "-C", str(project.path), "cat-file", "blob", f"{sha}:{rel}"], capture_output=True, check=True).stdout
        assert _read(path, rel) == committed, rel  # no CRLF, no smudge, no machine export-subst
    assert _read(path, "subst.md") == b"commit $Format:%H$\n"  # a tree is archived, not a commit: nothing to substitute
    assert cp.returncode in (0, 128)


def test_a_repository_missing_an_object_is_a_clean_error_and_no_bundle(project: Repo, tmp_path: Path, cli: Cli) -> None:
    """A damaged repository (a blob of the commit gone) makes git archive fail: reported with
    git's own message (exit 1), no traceback, no bundle."""
    blob = project.git("rev-parse", "HEAD:demo_app/core.py")
    (project.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 1, r.err
    assert "git archive" in r.err and blob[:7] in r.err and "Traceback" not in r.err
    assert _bundle_files(tmp_path / "bundles") == []


@pytest.mark.parametrize("name", ["DEPLOY-MANIFEST.txt", "ENVIRONMENT-MANIFEST.json"])
def test_a_repository_holding_a_name_the_deploy_writes_is_refused(project: Repo, tmp_path: Path, cli: Cli, name: str) -> None:
    """A tracked DEPLOY-MANIFEST.txt or ENVIRONMENT-MANIFEST.json would stand in for the
    tool's own (verify and rollback trust the environment's to say which files the deploy
    wrote): refused at bundle time, exit 4, nothing written."""
    project.write(name, '{"files": [], "dirs": []}\n')
    project.commit("a reserved name")
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 4 and name in r.err and "writes itself" in r.err, r.err
    out = tmp_path / "bundles"
    assert not out.exists() or list(out.iterdir()) == [], "no bundle, no partial file"


def _with_submodule(project: Repo, tmp_path: Path) -> None:
    lib = Repo(tmp_path / "lib")
    lib.path.mkdir()
    lib.git("init", "-q", "-b", "main")
    lib.write("vendored.py", "X = 1\n")
    lib.commit("lib")
    project.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.path), "vendor/lib")
    project.commit("a submodule")


def test_a_commit_with_a_git_submodule_is_refused_not_silently_shipped_without_it(project: Repo, tmp_path: Path, cli: Cli) -> None:
    """A commit records only a submodule's commit id: git archive writes an empty folder, so
    the release would lack its files without a word. Refused (exit 4) naming it, before
    anything is written; `release plan` lists it; bundle.submodules = "omit" releases
    without it, recorded in the bundle manifest."""
    _with_submodule(project, tmp_path)
    cfg = write_config(tmp_path / "release.toml", project.path)
    r = cli("--config", cfg, "bundle")
    assert r.code == 4 and "vendor/lib" in r.err and 'bundle.submodules = "omit"' in r.err, r.err
    out = tmp_path / "bundles"
    assert not out.exists() or list(out.iterdir()) == [], "nothing written"
    cli("--config", cfg, "plan")
    shown = (tmp_path / ".release" / "DEPLOY-PLAN.md").read_text()
    assert "submodules: vendor/lib (their files are not in the commit: bundle refuses it" in shown, shown
    omit = write_config(tmp_path / "omit.toml", project.path, bundle={"submodules": "omit", "artifacts": []})
    r = cli("--config", omit, "--json", "bundle")
    assert r.code == 0, r.err
    path = Path(str(r.json["bundle"]))
    manifest = json.loads(_read(path, "BUNDLE-MANIFEST.json"))
    assert manifest["omitted_submodules"] == ["vendor/lib"]
    members = _members(path)
    assert "vendor/lib" not in members and not [n for n, m in members.items() if n.startswith("vendor") and not m.isdir()], "nothing of the left-out submodule"
    assert ".gitmodules" in _members(path)


def test_an_unknown_submodules_choice_is_a_config_error(project: Repo, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, bundle={"submodules": "include"})
    r = cli("--config", cfg, "bundle")
    assert r.code == 2 and "bundle.submodules" in r.err, r.err


def test_a_source_repo_git_would_read_as_an_option_is_a_config_error(tmp_path: Path, cli: Cli) -> None:
    """An scp-style source.repo that starts with '-' would reach `git clone` as an option
    (--upload-pack runs a program): exit 2 before git runs, nothing made."""
    cfg = write_config(tmp_path / "release.toml", "--upload-pack=touch${IFS}ran@y:", top={"state": "state"})
    r = cli("--config", cfg, "bundle")
    assert r.code == 2 and "must not start with '-'" in r.err, r.err
    assert not (tmp_path / "state" / "mirrors").exists()


def test_a_killed_bundles_partial_file_is_cleared_by_the_next_run_and_nothing_else(project: Repo, tmp_path: Path, cli: Cli) -> None:
    """A bundle killed mid-write leaves ``.<name>.tar.gz.part-<host>-<pid>``: the next run on
    this machine removes it once that process is gone. A live process's partial file,
    another machine's (a shared folder) and a link of that name are left alone."""
    import socket

    out = tmp_path / "bundles"
    out.mkdir(mode=0o700)
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        killed = out / f".demo-app-0.6.0-abc1234-20260101T000000Z.tar.gz.part-{host}-{gone.pid}"
        killed_sums = out / f".demo-app-0.6.0-abc1234-20260101T000000Z.tar.gz.sha256.part-{host}-{gone.pid}"
        kept = [
            out / f".demo-app-0.6.0-abc1234-20260101T000001Z.tar.gz.part-{host}-{alive.pid}",
            out / f".demo-app-0.6.0-abc1234-20260101T000002Z.tar.gz.part-another-host-{gone.pid}",
        ]
        for p in (killed, killed_sums, *kept):
            p.write_bytes(b"partial")
        link = out / f".demo-app-0.6.0-abc1234-20260101T000003Z.tar.gz.part-{host}-{gone.pid + 100000}"
        link.symlink_to(tmp_path / "elsewhere")
        cfg = write_config(tmp_path / "release.toml", project.path)
        assert cli("--config", cfg, "bundle").code == 0
        assert not killed.exists() and not killed_sums.exists()
        assert all(p.exists() for p in kept) and link.is_symlink()
        assert len(_bundle_files(out)) == 1
    finally:
        alive.kill()
        alive.wait()


def test_a_killed_builds_export_is_removed_by_the_next_build_and_nothing_else(project: Repo, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle killed while building leaves its private build folder (an export of the
    source) in TMPDIR; the next build on this machine removes it once its run is gone. A
    live run's folder, and one that is not ours as made (not 0700, or a link), stay."""
    import socket
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()

    def made(name: str, pid: int, mode: int = 0o700) -> Path:
        folder = temp / name
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "secret.py").write_text("TOKEN = 'x'\n")
        (folder / ".owner").write_text(f"{host}-{pid}\n")
        folder.chmod(mode)
        return folder

    killed = made("release-build-killed", gone.pid)
    live = made("release-build-live", os.getpid())
    loose = made("release-build-loose", gone.pid, 0o755)
    (temp / "release-build-link").symlink_to(killed)
    cfg = write_config(tmp_path / "release.toml", project.path, bundle={"artifacts": ["wheel"]})
    r = cli("--config", cfg, "bundle")
    assert r.code == 0, r.err
    assert not killed.exists() and live.exists() and loose.exists() and (temp / "release-build-link").is_symlink()
    assert sorted(p.name for p in temp.iterdir()) == ["release-build-link", "release-build-live", "release-build-loose"], "this run's own folder is gone too"
