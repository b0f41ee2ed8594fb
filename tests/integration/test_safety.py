"""The safety promises attacked from the operator's and a local user's side (issue 8:
findings 2, 7, 8, 9, 10, 14, 15 and 17), each through the real CLI on real files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from release import agent, names
from release.errors import ConfigError, RefusedError

from ..support import Repo, bundle, deploy, keypair, listing, make_project, need, run_release, tree_state, write_config


@pytest.fixture
def local(project: Repo, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "opt" / "apps"
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("keep\n")
    return write_config(tmp_path / "release.toml", project.path, target={"root": str(root)}), root


# ----------------------------------------------------------------------------- finding 2


def test_checksum_file_that_is_not_a_regular_file_is_refused(local: tuple[Path, Path]) -> None:
    """A FIFO could serve one checksum to the deploy and another to the signature check."""
    cfg, root = local
    path = bundle(cfg)
    sums = path.with_name(path.name + ".sha256")
    sums.unlink()
    os.mkfifo(sums)
    before = tree_state(root)
    cp = deploy(cfg)
    assert cp.returncode == 4 and "not a regular file" in cp.stderr
    assert tree_state(root) == before


def test_the_signature_is_checked_over_the_bytes_deploy_uses(project: Repo, tmp_path: Path) -> None:
    """Deploy reads .sha256 once: the signature is verified over those bytes, not a second read."""
    from release import signing

    key = keypair(tmp_path, "signer")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"release@example.invalid {key.with_suffix('.pub').read_text().strip()}\n")
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "t")})
    cp = run_release("--config", cfg, "--json", "bundle", "--sign", str(key))
    assert cp.returncode == 0, cp.stderr
    path = Path(json.loads(cp.stdout)["bundle"])
    signed = path.with_name(path.name + ".sha256").read_bytes()
    assert signing.verify(path, str(signers), signed) == "release@example.invalid"
    swapped = b"0" * 64 + signed[64:]
    with pytest.raises(RefusedError):
        signing.verify(path, str(signers), swapped)  # the file on disk is still the signed one


# ----------------------------------------------------------------------------- finding 7


def test_rollback_command_is_shell_quoted_for_any_folder(tmp_path: Path) -> None:
    target = tmp_path / "my apps" / "app-v1"
    target.mkdir(parents=True)
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "keep").write_text("keep")
    subprocess.run(names.rollback_command(str(target)), shell=True, check=True)
    assert not target.exists() and (tmp_path / "my" / "keep").exists() and (tmp_path / "my apps").exists()


def test_root_with_a_space_round_trips(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "srv" / "my apps"
    (tmp_path / "srv" / "my").mkdir(parents=True)
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root)})
    bundle(cfg)
    cp = deploy(cfg)
    assert cp.returncode == 0, cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    manifest = (target / "DEPLOY-MANIFEST.txt").read_text()
    assert f"rollback: rm -rf -- '{target}'" in manifest
    assert run_release("--config", cfg, "rollback").returncode == 0
    assert (tmp_path / "srv" / "my").is_dir()


@pytest.mark.parametrize("version", ["0.6.0 *", "0.6.0 x", "$(reboot)", "0.6;rm", "1.0/../../x"])
def test_hostile_versions_are_refused(tmp_path: Path, version: str) -> None:
    repo = make_project(tmp_path / "app", version=version.replace("\n", "\\n"))
    cfg = write_config(tmp_path / "release.toml", repo.path)
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode in (2, 4), cp.stderr
    assert not list((tmp_path / "bundles").glob("*.tar.gz")) if (tmp_path / "bundles").exists() else True


@pytest.mark.parametrize("bad", ["app\nv1", "app v1", "app;v1", "../x", "a*"])
def test_unsafe_target_dir_is_a_config_error(project: Repo, tmp_path: Path, bad: str) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "t"), "dir": bad})
    cp = run_release("--config", cfg, "plan")
    assert cp.returncode == 2, cp.stderr


@pytest.mark.parametrize("key", ["python", "root"])
def test_nul_in_a_path_key_is_exit_2(project: Repo, tmp_path: Path, key: str) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "t")})
    cfg.write_text(
        cfg.read_text().replace("[target]", f'[target]\n{key} = "x\\u0000y"') if key == "python" else cfg.read_text().replace(str(tmp_path / "t"), "/t\\u0000x")
    )
    cp = run_release("--config", cfg, "status")
    assert cp.returncode == 2 and "control character" in cp.stderr and "Traceback" not in cp.stderr


def test_pre_release_version_bundles_and_deploys(tmp_path: Path) -> None:
    """`1.0-rc1` bundled and then was refused by deploy: one module now formats and parses names."""
    repo = make_project(tmp_path / "app", version="1.0-rc1")
    root = tmp_path / "t"
    cfg = write_config(tmp_path / "release.toml", repo.path, target={"root": str(root)})
    path = bundle(cfg)
    assert "-1.0rc1-" in path.name
    cp = deploy(cfg)
    assert cp.returncode == 0, cp.stderr
    assert (root / "demo-app-v1.0rc1").is_dir()
    assert run_release("--config", cfg, "rollback").returncode == 0


PEP440 = ["1", "1.0", "1.0.0", "2!1.0", "1.0a1", "1.0b2", "1.0rc1", "1.0.post1", "1.0.dev3", "1.0a1.post2.dev3", "1.0+local.7", "2!3.4rc5.post6.dev7+abc.8"]


@pytest.mark.parametrize("version", PEP440)
def test_names_round_trip_over_every_pep440_form(version: str) -> None:
    assert names.normalize_version(version) == version
    made = names.bundle_name("my-app.x", version, "abcdef0123", "20260101T000000Z")
    parsed = names.parse_bundle_name("my-app.x", made.filename)
    assert parsed == made and parsed.version == version
    assert names.parse_bundle_name("my-app", made.filename) is None, "another app's bundle is never taken"
    parent, folder = names.release_dir("timestamped", "", "my-app.x", version, "abcdef0", "20260101T000000Z")
    assert (parent, folder) == ("releases", made.basename)
    assert names.release_dir("side-by-side", "{name}-v{version}", "my-app.x", version, "abcdef0", "x")[1] == f"my-app.x-v{version}"


def test_deploy_ids_sort_by_time_within_a_second() -> None:
    import datetime as dt

    t = dt.datetime(2026, 1, 1, 0, 0, 0, 900, tzinfo=dt.UTC)
    ids = [names.new_deploy_id(t + dt.timedelta(microseconds=i * 1000)) for i in range(50)]
    assert sorted(ids) == ids
    assert all(agent.checked_id(i) == i for i in ids)


def test_name_rules_are_one_rule() -> None:
    for bad in ["a\x7fb", "a\\b", "/abs", "a/../b", "a//b", "", "a\x00b"]:
        assert agent.name_problem(bad)
        with pytest.raises((ConfigError, RefusedError)):
            names.check_folder(bad)
    assert agent.name_problem("ok/name.py") == ""


# ----------------------------------------------------------------------------- finding 8


def test_rollback_never_leaves_current_dangling(local: tuple[Path, Path]) -> None:
    cfg, root = local
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    bundle(cfg)
    a = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    time.sleep(1.1)
    b = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    rb = run_release("--config", cfg, "rollback", "--deploy-id", a["deploy_id"])
    # out of order: B was added to releases/ since A's deploy, so the listing proof differs (exit 1)
    assert rb.returncode in (0, 1) and "removed" in rb.stdout, rb.stderr
    assert not Path(a["target"]).exists()
    assert "now current -> releases/" in rb.stdout
    rb = run_release("--config", cfg, "rollback", "--deploy-id", b["deploy_id"])
    assert rb.returncode in (0, 1) and not Path(b["target"]).exists(), rb.stderr  # A, in B's pre-state, is gone
    assert not os.path.lexists(root / "current"), "current never points at a release that is gone"
    assert "no longer exists" in rb.stdout and "now none" in rb.stdout


def test_promoting_a_rolled_back_deploy_is_blocked(local: tuple[Path, Path]) -> None:
    cfg, _ = local
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    bundle(cfg)
    a = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "rollback").returncode == 0
    cp = run_release("--config", cfg, "promote", "--force", "--deploy-id", a["deploy_id"])
    assert cp.returncode == 3 and "rolled-back" in cp.stderr and "Traceback" not in cp.stderr


# ----------------------------------------------------------------------------- finding 9 and 17 (state)


def test_plan_never_changes_the_mode_of_an_existing_state_folder_and_refuses_a_shared_one(local: tuple[Path, Path]) -> None:
    cfg, _ = local
    state = cfg.parent / ".release"
    state.mkdir(mode=0o750)
    state.chmod(0o750)
    bundle(cfg)
    assert stat.S_IMODE(state.stat().st_mode) == 0o750, "an existing folder keeps its mode"
    state.chmod(0o1777)
    cp = deploy(cfg)
    assert cp.returncode == 4 and "may be written by other users" in cp.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o1777


def test_a_corrupt_record_does_not_crash_status_rollback_or_smoke(local: tuple[Path, Path]) -> None:
    cfg, root = local
    bundle(cfg)
    assert deploy(cfg).returncode == 0
    (cfg.parent / ".release" / "deploys" / "0000-corrupt.json").write_text("{not json")
    st = run_release("--config", cfg, "status")
    assert st.returncode == 0 and "unreadable deploy records" in st.stdout
    assert run_release("--config", cfg, "verify").returncode == 0
    assert run_release("--config", cfg, "rollback").returncode == 0


# ----------------------------------------------------------------------------- finding 10 (full disk, planted names)


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    need(cp.returncode == 0, f"cannot mount a tmpfs (needs root): {cp.stderr.strip()}")


def _fill(path: Path, leave: int) -> None:
    """Fill the filesystem at ``path`` until ``leave`` bytes are free."""
    filler = path / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(1 << 20, max(free - leave, 512)))
                f.flush()
        except OSError:
            pass


@contextlib.contextmanager
def _small_disk(project: Repo, tmp_path: Path, files: int) -> Iterator[tuple[Path, Path, Path]]:
    """(disk, root, config): a 2 MiB tmpfs whose root holds one file of the operator's, and
    a bundle of ``files`` files of 8 KiB, built outside it."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "2m")
    try:
        root = disk / "root"
        root.mkdir()
        (root / "notes.txt").write_text("keep")
        for i in range(files):
            project.write(f"data/f{i:03}.bin", os.urandom(4096).hex())
        project.commit(f"{files} files")
        cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root)})
        bundle(cfg)
        yield disk, root, cfg
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("leave", [0, 4096, 64 * 1024])
def test_full_disk_leaves_nothing_that_blocks_the_tool(project: Repo, tmp_path: Path, leave: int) -> None:
    with _small_disk(project, tmp_path, 200) as (disk, root, cfg):
        _fill(disk, leave)
        cp = deploy(cfg)
        assert cp.returncode in (3, 4), cp.stderr
        assert "Traceback" not in cp.stderr and ("disk is full" in cp.stderr or "No space" in cp.stderr), cp.stderr
        assert listing(root) == ["notes.txt"], "no lock, no staging, no marker is left behind"
        (disk / "filler").unlink()
        cp = deploy(cfg)
        assert cp.returncode == 0, cp.stderr
        assert run_release("--config", cfg, "rollback").returncode == 0
        assert listing(root) == ["notes.txt"]


def test_a_release_larger_than_the_free_space_stops_before_the_disk_is_full(project: Repo, tmp_path: Path) -> None:
    """The pass takes each member's size from its header before writing it: the bundle
    (about 2.4 MB of files for a 2 MiB disk) stops while the disk still has its reserve,
    with its own message rather than ENOSPC, and leaves nothing."""
    with _small_disk(project, tmp_path, 300) as (_disk, root, cfg):
        cp = deploy(cfg)
        assert cp.returncode == 3, cp.stderr
        assert "not enough free space for the release" in cp.stderr and "disk is full" in cp.stderr, cp.stderr
        assert "No space left" not in cp.stderr, "the guard stops the pass before the filesystem does"
        assert listing(root) == ["notes.txt"]


def test_planted_trash_and_staging_names_cannot_block_rollback(local: tuple[Path, Path]) -> None:
    """Another local user read the deploy id in the manifest and planted the old fixed trash name."""
    cfg, root = local
    bundle(cfg)
    res = json.loads(deploy(cfg).stdout)
    did = res["deploy_id"]
    for name in (f".release-trash-{did}", f".release-tmp-{did}", ".release-lock-breaking-x"):
        (root / name).mkdir()
        (root / name / "theirs.txt").write_text("not yours")
    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 0, cp.stderr
    for name in (f".release-trash-{did}", f".release-tmp-{did}"):
        assert (root / name / "theirs.txt").read_text() == "not yours", "what the tool did not create is never removed"
    st = run_release("--config", cfg, "status")
    assert f".release-trash-{did}" in st.stdout, "status shows what looks like leftovers"


# ----------------------------------------------------------------------------- finding 14


@pytest.mark.parametrize(("key", "value"), [("dirs", ["../escape"]), ("dirs", ["/etc/x"]), ("config_file", "../../x.toml"), ("config_file", "/tmp/x.toml")])
def test_provision_never_writes_outside_its_root(project: Repo, tmp_path: Path, key: str, value: object) -> None:
    prov: dict[str, object] = {"root": str(tmp_path / "var"), "dirs": ["runs"], "config_file": "c.toml"}
    prov[key] = value
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "opt")}, provision=prov)
    before = tree_state(tmp_path)
    cp = run_release("--config", cfg, "provision")
    assert cp.returncode == 2, cp.stderr
    assert tree_state(tmp_path) == before


def test_provision_refuses_a_link_out_of_its_root(project: Repo, tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "var" / "runs").symlink_to(tmp_path / "elsewhere")
    cfg = write_config(
        tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "opt")}, provision={"root": str(tmp_path / "var"), "dirs": ["runs/a"]}
    )
    cp = run_release("--config", cfg, "provision")
    assert cp.returncode == 4 and "outside provision.root" in cp.stderr
    assert not (tmp_path / "elsewhere" / "a").exists()


def test_provision_refuses_a_secret_in_a_setting_value(project: Repo, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "opt")}, provision={"root": str(tmp_path / "var"), "config_file": "c.toml"}
    )
    cfg.write_text(cfg.read_text() + '[provision.settings]\ndatabase = "postgresql://app:Sup3rSecret@db/app"\n')
    cp = run_release("--config", cfg, "provision")
    assert cp.returncode == 4 and "holds a secret" in cp.stderr and "Sup3rSecret" not in cp.stderr
    assert not (tmp_path / "var").exists()


# ----------------------------------------------------------------------------- finding 15 and 17 (locks)


def _stale_lock(root: Path, host: str | None = None) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = {"host": host or socket.gethostname(), "pid": dead.pid, "time": time.time(), "deploy_id": "dead-run", "op": "deploy"}
    (root / ".release-lock").write_text(json.dumps(lock))


def test_two_break_lock_runs_never_both_take_the_lock(tmp_path: Path) -> None:
    """50 trials of two agents breaking the same stale lock at once: exactly one wins each time."""
    root = tmp_path / "root"
    root.mkdir()
    script = (
        "import sys, time\nsys.path.insert(0, sys.argv[2])\nfrom release import agent\n"
        "try:\n    with agent.Lock(sys.argv[1], 'x-' + str(__import__('os').getpid()), 'deploy', True):\n"
        "        print('took', flush=True)\n        time.sleep(0.3)\nexcept agent.AgentError as e:\n    print('refused', e.code, flush=True)\n"
    )
    repo_root = str(Path(__file__).resolve().parents[2])
    wins = []
    for _ in range(50):
        _stale_lock(root)
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(root), repo_root], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        outs = [p.communicate(timeout=30) for p in procs]
        assert all("Traceback" not in err for _, err in outs), outs
        took = [o for o, _ in outs if o.startswith("took")]
        assert len(took) <= 1, outs
        wins.append(len(took))
        assert not (root / ".release-lock").exists()
        assert [n for n in os.listdir(root) if n.startswith(".release-lock")] == []
    assert sum(wins) >= 25, "the stale lock is broken by one of them"


def test_a_lock_from_another_host_is_not_called_live_and_can_be_broken(local: tuple[Path, Path]) -> None:
    cfg, root = local
    bundle(cfg)
    _stale_lock(root, host="some-other-host")
    cp = deploy(cfg)
    assert cp.returncode == 4 and "another host" in cp.stderr and "--break-lock" in cp.stderr
    cp = deploy(cfg, "--break-lock")
    assert cp.returncode == 0, cp.stderr


# ----------------------------------------------------------------------------- finding 17 (the rest)


def test_releases_symlink_out_of_the_root_is_refused(local: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, root = local
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "releases").symlink_to(elsewhere)
    bundle(cfg)
    cp = deploy(cfg)
    assert cp.returncode == 4 and "symlink" in cp.stderr
    assert list(elsewhere.iterdir()) == []


def test_read_only_root_gives_a_hint_not_a_traceback(local: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, root = local
    bundle(cfg)
    cp = subprocess.run(["mount", "--bind", "-o", "ro", str(root), str(root)], capture_output=True, text=True)
    need(cp.returncode == 0, f"cannot bind-mount read-only: {cp.stderr}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=False)
        cp = deploy(cfg)
        assert cp.returncode in (3, 4) and "read-only" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    finally:
        subprocess.run(["umount", str(root)], check=False)


def test_verify_reports_added_directories(local: tuple[Path, Path]) -> None:
    cfg, _ = local
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    (target / "newdir").mkdir()
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 1 and "newdir/" in json.loads(v.stdout)["added"]
    shutil.rmtree(target / "newdir")
    assert run_release("--config", cfg, "verify").returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize(
    ("options", "stops"),
    [
        pytest.param("64k", "the bundle", id="bundle-does-not-fit"),
        pytest.param("4m,nr_inodes=3", "its checksum file", id="checksum-file-does-not-fit"),
    ],
)
def test_a_full_disk_under_the_bundles_is_blocked_and_leaves_nothing(project: Repo, tmp_path: Path, options: str, stops: str) -> None:
    """The controller's disk fills while the bundle is written (or when only its checksum
    file is left to write: one inode short): exit 3 naming the place, no traceback, and no
    partial file or bundle without its checksum left behind."""
    project.write("data.bin", os.urandom(300_000))
    project.commit("300 kB that do not compress")
    out = tmp_path / "out"
    _tmpfs(out, options)
    try:
        cfg = write_config(tmp_path / "release.toml", project.path, bundle={"out": str(out), "artifacts": []})
        cp = run_release("--config", cfg, "bundle")
        assert cp.returncode == 3, (stops, cp.stderr)
        assert "no space left on the device" in cp.stderr and str(out) in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
        assert list(out.iterdir()) == [], f"left after {stops} did not fit: {list(out.iterdir())}"
    finally:
        _unmount(out)


def test_a_full_disk_under_the_state_folder_is_blocked_before_the_target_is_touched(project: Repo, tmp_path: Path) -> None:
    """The controller's state folder cannot take the deploy's record: exit 3 naming it, no
    traceback, the target untouched and no stray temporary record."""
    cfg = write_config(tmp_path / "release.toml", project.path, top={"state": "state"}, target={"root": str(tmp_path / "srv"), "create_root": True})
    bundle(cfg)
    state = tmp_path / "state"
    assert not state.exists()
    _tmpfs(state, "256k")
    try:
        os.chmod(state, 0o700)
        _fill(state, 0)
        (state / "filler").chmod(0o600)
        cp = deploy(cfg)
        assert cp.returncode == 3, cp.stderr
        assert "no space left on the device" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
        assert not (tmp_path / "srv").exists() or list((tmp_path / "srv").iterdir()) == [], "nothing reached the target"
        assert not list(state.rglob("*.tmp")), "no half-written record left"
    finally:
        _unmount(state)
