#!/usr/bin/env python3
"""Benchmark the pipeline against the raw tools, measured in the same run.

    python scripts/bench.py [--files 20000] [--mb 80] [--repeat 3] [--only bundle,deploy,rollback,ship]

Makes a synthetic git repository (about 20,000 files, 80 MB), then prints, for each
stage, the best-of-N wall time of `release <stage>` (the console script beside this
interpreter, as the nox sessions run it) and of the raw floor, and their ratio. Deploy,
rollback and ship run with their floor in alternated pairs (the order flips every round,
so a drift of the machine's speed hits both alike) and also print the median of the
pairs' ratios:

- bundle (artifacts = [])  vs  git archive | gzip -6, with hashlib over the result
- deploy to a local target vs  hashlib checksum + GNU tar -xzf of the same bundle + sync
                              (deploy flushes to disk before its atomic rename)
- rollback                 vs  rm -rf of the same tree (in the same, synced, state)
- ship over SSH            vs  ssh host 'cat > file' < bundle   (needs an sshd; see tests)
- env: deploy of a release with an environment (7 wheels, one binary)
                           vs  python -m venv + pip install --no-index --find-links of the same wheels
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def release_command() -> list[str]:
    """The ``release`` console script beside this interpreter (what an operator and the nox
    sessions run); ``python -m release`` (which pays for runpy) when it is not installed."""
    script = Path(sys.executable).parent / "release"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "release"]


RELEASE = release_command()
Row = tuple[str, float, float, str]  # measure, ours, the floor (or the peer), a note
WORDS = [
    w.encode()
    for w in [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "omicron",
        "pi",
        "rho",
        "sigma",
        "tau",
    ]
]


def make_repo(root: Path, files: int, mb: int) -> Path:
    repo = root / "app"
    if (repo / ".git").exists():
        return repo
    rng = random.Random(42)
    (repo / "pkg").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "bench-app"\nversion = "1.0.0"\n')
    per_file = mb * 1024 * 1024 // files
    for i in range(files):
        d = repo / "pkg" / f"m{i % 200:03d}"
        d.mkdir(exist_ok=True)
        n = max(16, int(rng.expovariate(1 / per_file)))
        words = b" ".join(rng.choice(WORDS) + str(rng.randrange(10**6)).encode() for _ in range(n // 10))
        (d / f"f{i:05d}.py").write_bytes(words[:n] + b"\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "bench"], check=True, env=env)
    return repo


def timed(fn: Callable[[], None], before: Callable[[], None] | None = None) -> float:
    if before:
        before()
    os.sync()  # settle the disk: earlier work's writeback must not land in this timing
    time.sleep(0.5)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best(fn: Callable[[], None], repeat: int, before: Callable[[], None] | None = None) -> float:
    return min(timed(fn, before) for _ in range(repeat))


def paired(
    ours: Callable[[], None],
    raw: Callable[[], None],
    repeat: int,
    before_ours: Callable[[], None] | None = None,
    before_raw: Callable[[], None] | None = None,
) -> tuple[float, float, str]:
    """Ours and the floor in alternated pairs (the order flips every round, so a drift of the
    machine's speed hits both alike): the best of each, and the median of the pairs' ratios."""
    mine: list[float] = []
    floor: list[float] = []
    for i in range(repeat):
        runs = [(ours, before_ours, mine), (raw, before_raw, floor)]
        for fn, before, out in runs if i % 2 == 0 else runs[::-1]:
            out.append(timed(fn, before))
    ratio = statistics.median([a / b for a, b in zip(mine, floor, strict=True)])
    added = statistics.median([a - b for a, b in zip(mine, floor, strict=True)])
    return min(mine), min(floor), f"   (median of {repeat} alternated pairs: {ratio:.2f}x, {added:+.2f}s)"


def sh(*argv: str, **kw: object) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--mb", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="bundle,deploy,rollback,attest,prune,ship,env,promote,fleet")
    ap.add_argument("--ansible", default="", help="a venv with `ansible` installed (else one is made under --workdir, from PyPI)")
    ap.add_argument(
        "--kex",
        default="",
        help="fleet: also measure with this KexAlgorithms for both tools (e.g. curve25519-sha256: the hosts' scaling apart from the key exchange's CPU)",
    )
    ap.add_argument("--workdir", default="", help="keep the synthetic repo here between runs (a tmpfs such as /dev/shm removes disk noise)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="release-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = make_repo(work, args.files, args.mb)
    size = sum(p.stat().st_size for p in (repo / "pkg").rglob("*") if p.is_file())
    print(f"synthetic repo: {args.files} files, {size / 1e6:.1f} MB at {repo}")
    # what an installed tool runs: its bytecode compiled (pip does it at install time; an
    # editable install with PYTHONDONTWRITEBYTECODE would recompile the package on every run)
    sh(sys.executable, "-m", "compileall", "-q", str(HERE / "release"))
    # the target's interpreter itself, not a shim that finds it (a pyenv shim is a bash
    # script: ~60 ms per start); the fleet measure does the same for both tools
    py = os.path.realpath(sys.executable)
    cfg = work / "release.toml"
    root = work / "target"
    root.mkdir(exist_ok=True)
    base_cfg = (
        f'name = "bench"\nstate = "state"\n[source]\nrepo = "{repo}"\nhead = "HEAD"\n'
        f'[bundle]\nout = "bundles"\nartifacts = []\n[target]\nroot = "{root}"\ndir = "{{name}}-{{stamp}}"\npython = "{py}"\n'
    )
    cfg.write_text(base_cfg)
    release = [*RELEASE, "--config", str(cfg)]
    rows: list[Row] = []
    out = work / "raw.tar.gz"

    def raw_bundle() -> None:
        with out.open("wb") as f:
            git = subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", "HEAD"], stdout=subprocess.PIPE)
            gz = subprocess.Popen(["gzip", "-6", "-n"], stdin=git.stdout, stdout=f)
            assert git.stdout is not None
            git.stdout.close()
            gz.wait()
            git.wait()
        h = hashlib.sha256()
        with out.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)

    def clean_bundles() -> None:
        shutil.rmtree(work / "bundles", ignore_errors=True)

    if "bundle" in only or "deploy" in only or "rollback" in only:
        t_raw = best(raw_bundle, args.repeat)
        t_rel = best(lambda: sh(*release, "bundle"), args.repeat, clean_bundles)
        rows.append(("bundle vs git archive|gzip + sha256", t_rel, t_raw, ""))
    bundle = next((work / "bundles").glob("*.tar.gz"), None) if (work / "bundles").exists() else None
    if bundle is None:
        sh(*release, "bundle")
        bundle = next((work / "bundles").glob("*.tar.gz"))
    raw_dir = work / "raw-extract"

    durable = True

    def raw_deploy() -> None:
        shutil.rmtree(raw_dir, ignore_errors=True)
        raw_dir.mkdir()
        h = hashlib.sha256()
        with bundle.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        sh("tar", "-xzf", str(bundle), "-C", str(raw_dir))
        if durable:
            os.sync()  # deploy flushes to disk before its rename; so does this floor

    def rollback_all() -> None:
        while subprocess.run([*release, "rollback"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            pass

    if "deploy" in only or "rollback" in only:
        rollback_all()
        rows.append(
            (
                "deploy (local) vs sha256 + tar -xzf",
                *paired(lambda: sh(*release, "deploy", "--no-plan", "--bundle", str(bundle)), raw_deploy, args.repeat, rollback_all),
            )
        )
    if "rollback" in only:
        # the floor removes a tree in the same on-disk state as a deployed one (synced)
        rollback_all()
        rows.append(
            (
                "rollback vs rm -rf",
                *paired(
                    lambda: sh(*release, "rollback"),
                    lambda: sh("rm", "-rf", str(raw_dir)),
                    args.repeat,
                    lambda: sh(*release, "deploy", "--no-plan", "--bundle", str(bundle)),
                    raw_deploy,
                ),
            )
        )
    if "attest" in only:
        rows += bench_attest(work, release, bundle, base_cfg, args.repeat)
    if "prune" in only:
        rows.append(bench_prune(work, repo, bundle, args.repeat, py))
    if "ship" in only:
        sys.path.insert(0, str(HERE))
        from tests.servers import start_sshd  # a throwaway sshd on 127.0.0.1, as in the tests

        sshd_dir = Path(tempfile.mkdtemp(prefix="release-bench-sshd-"))
        server, why = start_sshd(sshd_dir)
        if server is None:
            shutil.rmtree(sshd_dir, ignore_errors=True)
            print(f"ship: skipped: {why}")
        else:
            ssh_cfg = work / "release-ssh.toml"
            ssh_cfg.write_text(base_cfg + f'host = "{server.host}"\nssh_config = "{server.config}"\n')
            remote = work / "shipped-raw.tar.gz"

            def raw_ship() -> None:
                with bundle.open("rb") as f:
                    sh("ssh", "-F", str(server.config), server.host, f"cat > {remote}", stdin=f)

            try:
                ssh_release = [*RELEASE, "--config", str(ssh_cfg)]
                ship = paired(lambda: sh(*ssh_release, "deploy", "--no-plan", "--bundle", str(bundle), "--ship-only"), raw_ship, args.repeat)
                rows.append(("ship over SSH vs ssh 'cat > file'", *ship))
            finally:
                server.proc.terminate()
                server.proc.wait()
                shutil.rmtree(sshd_dir, ignore_errors=True)  # its keys and config: nothing of the run stays
    if "env" in only:
        rows.append(bench_env(work, args.repeat))
    if "promote" in only:
        rows += bench_promote(work, args.repeat)
    if "fleet" in only:
        rows += bench_fleet(work, args.repeat, args.ansible)
        if args.kex:
            rows += bench_fleet(work, args.repeat, args.ansible, kex=args.kex)
    print(f"{'measure':60} {'release':>9} {'raw':>9} {'ratio':>7}")
    for name, rel, raw, note in rows:
        print(f"{name:60} {rel:8.2f}s {raw:8.2f}s {rel / raw:6.2f}x" + (f"   (Ansible/ours {raw / rel:.1f}x)" if "Ansible" in name else "") + note)
    return 0


def bench_env(work: Path, repeat: int) -> Row:
    """Deploy of a release that carries its environment, against building the same venv by hand."""
    app = work / "envapp"
    if not (app / ".git").exists():
        (app / "envapp").mkdir(parents=True)
        (app / "envapp" / "__init__.py").write_text("import markupsafe, packaging\n")
        (app / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
            '[project]\nname = "envapp"\nversion = "1.0"\ndependencies = ["packaging", "markupsafe"]\n'
            '[dependency-groups]\ntests = ["pytest"]\n[tool.hatch.build.targets.wheel]\npackages = ["envapp"]\n'
        )
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
        subprocess.run(["git", "init", "-q", str(app)], check=True)
        subprocess.run(["git", "-C", str(app), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(app), "commit", "-qm", "envapp"], check=True, env=env)
    cfg = work / "release-env.toml"
    root = work / "env-target"
    cfg.write_text(
        f'name = "envapp"\nstate = "state-env"\n[source]\nrepo = "{app}"\nhead = "HEAD"\n[bundle]\nout = "bundles-env"\nartifacts = ["wheel"]\n'
        f'[target]\nroot = "{root}"\ndir = "{{name}}-{{stamp}}"\ncreate_root = true\n[environment]\ngroups = ["tests"]\n'
    )
    release = [*RELEASE, "--config", str(cfg)]
    bundles = work / "bundles-env"
    if not bundles.exists() or not list(bundles.glob("*.tar.gz")):
        sh(*release, "bundle")
    bundle = next(bundles.glob("*.tar.gz"))
    wheels = work / "env-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    import tarfile

    with tarfile.open(bundle) as tf:
        for m in tf:
            if m.name.endswith(".whl"):
                f = tf.extractfile(m)
                assert f is not None
                (wheels / Path(m.name).name).write_bytes(f.read())
    count = len(list(wheels.glob("*.whl")))
    venv = work / "raw-venv"

    def raw() -> None:
        shutil.rmtree(venv, ignore_errors=True)
        sh(sys.executable, "-m", "venv", str(venv))
        sh(str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(wheels), *map(str, sorted(wheels.glob("*.whl"))))

    def rollback_all() -> None:
        while subprocess.run([*release, "rollback"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            pass

    t_raw = best(raw, repeat)
    t_rel = best(lambda: sh(*release, "deploy", "--no-plan", "--bundle", str(bundle)), repeat, rollback_all)
    rollback_all()
    return (f"deploy with env ({count} wheels) vs venv+pip", t_rel, t_raw, "")


PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - community.general.deploy_helper:
        path: "{root}"
        state: present
    - ansible.builtin.file:
        path: "{{{{ deploy_helper.new_release_path }}}}"
        state: directory
    - ansible.builtin.unarchive:
        src: "{bundle}"
        dest: "{{{{ deploy_helper.new_release_path }}}}"
        extra_opts: ["--strip-components=1"]
    - community.general.deploy_helper:
        path: "{root}"
        release: "{{{{ deploy_helper.new_release }}}}"
        state: finalize
        keep_releases: 100
"""


def _ansible(work: Path, given: str) -> Path:
    if given:
        return Path(given)
    venv = work / "ansible-venv"
    if not (venv / "bin" / "ansible-playbook").exists():
        sh(sys.executable, "-m", "venv", str(venv))
        sh(str(venv / "bin" / "pip"), "install", "--quiet", "ansible")
    return venv


def bench_collection(work: Path, base: Path, fleet: Any, py: str, hosts: list[str], bundle: Path, repeat: int, kex: str) -> float:
    """The collection's deploy (release.pipeline.deploy: checksum, scan, manifest on each
    host) of the same bundle to the same hosts with the same forks, by this interpreter's
    ansible-core (its controller has the release tool, which the action plugin uses)."""
    import runpy

    collections = Path(runpy.run_path(str(HERE / "scripts" / "build_collection.py"))["assemble"](base / "collection")).parents[2]
    cfg = work / "release-collection.toml"
    repo = work / "fleetapp"
    cfg.write_text(
        f'name = "fleetapp"\nstate = "state-collection"\n[source]\nrepo = "{repo}"\nhead = "HEAD"\n[bundle]\nout = "bundles-fleet"\nartifacts = []\n'
        f'[target]\nroot = "{fleet.root}/collection"\ncreate_root = true\nstrategy = "timestamped"\npython = "{py}"\n'
    )
    inv = work / "collection-hosts.ini"
    inv.write_text(
        "[all]\n" + "".join(f"{h}\n" for h in hosts) + f"[all:vars]\nansible_python_interpreter={py}\nansible_ssh_common_args='-F {fleet.ssh_config}'\n"
    )
    play = work / "collection.yml"
    play.write_text(f'- hosts: all\n  gather_facts: false\n  tasks:\n    - release.pipeline.deploy: {{config: "{cfg}", bundle: "{bundle}"}}\n')
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_FORKS": "8",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(base / "ansible-cp"),
    }

    def clear() -> None:  # each run deploys anew: the releases of the last one go (as the floor's do not count)
        for h in fleet.hosts:
            shutil.rmtree(h.folder / "collection", ignore_errors=True)
        time.sleep(1.05)  # a release folder is named to the second

    exe = Path(sys.executable).parent / "ansible-playbook"
    took = best(lambda: sh(str(exe), "-i", str(inv), "-f", "8", str(play), env=env), repeat, clear)
    clear()
    return took


def bench_fleet(work: Path, repeat: int, ansible_venv: str, kex: str = "") -> list[Row]:
    """Our fleet deploy against an Ansible playbook doing the same job (deploy_helper +
    unarchive, forks = 8, the same ssh_config), on 1 and on 8 namespace hosts (tests/netns.py)."""
    sys.path.insert(0, str(HERE))
    from tests.netns import NsFleet, available

    why = available()
    if why:
        print(f"fleet: skipped: {why}")
        return []
    app = work / "fleetapp"
    if not (app / ".git").exists():
        rng = random.Random(7)
        (app / "pkg").mkdir(parents=True)
        (app / "pyproject.toml").write_text('[project]\nname = "fleetapp"\nversion = "1.0"\n')
        for i in range(300):
            (app / "pkg" / f"m{i:03d}.py").write_bytes(b" ".join(rng.choice(WORDS) for _ in range(400)) + b"\n")
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
        subprocess.run(["git", "init", "-q", str(app)], check=True)
        subprocess.run(["git", "-C", str(app), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(app), "commit", "-qm", "fleetapp"], check=True, env=env)
    ansible = _ansible(work, ansible_venv)
    # under the work folder (a tmpfs with --workdir /dev/shm/...), like the one-host measures;
    # the hosts get empty login files, as fresh hosts have (both tools run through them)
    base = Path(tempfile.mkdtemp(prefix="fleet-", dir=work))
    fleet = NsFleet(base, base / "srv", clean_login=True)
    rows: list[Row] = []
    try:
        fleet.start(8)
        assert fleet.ssh_config is not None
        if kex:  # for every host, both tools (ssh_config: the first value found wins, and no host sets it)
            with fleet.ssh_config.open("a") as f:
                f.write(f"Host *\n  KexAlgorithms {kex}\n")
        py = os.path.realpath(sys.executable)  # the interpreter itself, not a shim (the same for both tools)
        names = [h.name for h in fleet.hosts]
        results: dict[tuple[str, int], float] = {}
        deploys: dict[int, Callable[[], None]] = {}
        undos: dict[int, Callable[[], None]] = {}
        for count in (1, 8):
            hosts = names[:count]
            cfg = work / f"release-fleet{count}.toml"
            cfg.write_text(
                f'name = "fleetapp"\nstate = "state-fleet{count}"\n[source]\nrepo = "{app}"\nhead = "HEAD"\n[bundle]\nout = "bundles-fleet"\nartifacts = []\n'
                f'[target]\nroot = "{fleet.root}/ours"\ncreate_root = true\nstrategy = "timestamped"\nhosts = {json.dumps(hosts)}\n'
                f'ssh_config = "{fleet.ssh_config}"\npython = "{py}"\n[fleet]\nforks = 8\n'
            )
            release = [*RELEASE, "--config", str(cfg)]
            if not list((work / "bundles-fleet").glob("*.tar.gz")):
                sh(*release, "bundle")
            bundle = next((work / "bundles-fleet").glob("*.tar.gz"))

            def undo(release: list[str] = release) -> None:
                while subprocess.run([*release, "rollback"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                    pass

            deploys[count] = lambda release=release, bundle=bundle: sh(*release, "deploy", "--no-plan", "--bundle", str(bundle))
            undos[count] = undo
            inv = work / f"ansible-hosts{count}.ini"
            inv.write_text(
                "[all]\n" + "".join(f"{h}\n" for h in hosts) + f"[all:vars]\nansible_python_interpreter={py}\nansible_ssh_common_args='-F {fleet.ssh_config}'\n"
            )
            play = work / "deploy.yml"
            play.write_text(PLAYBOOK.format(root=f"{fleet.root}/ansible", bundle=bundle))
            # Ansible's shared connections (ControlPersist=60s) live in a folder of this fleet:
            # its default ~/.ansible/cp is keyed by host name, port and user, so a second
            # fleet's h0 would reuse the first fleet's master, dead with its namespace, and hang
            env = {
                **os.environ,
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_FORKS": "8",
                "ANSIBLE_STDOUT_CALLBACK": "default",
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(base / "ansible-cp"),
            }

            def run_ansible(inv: Path = inv, play: Path = play, env: dict[str, str] = env) -> None:
                sh(str(ansible / "bin" / "ansible-playbook"), "-i", str(inv), "-f", "8", str(play), env=env)

            results[("ansible", count)] = best(run_ansible, repeat)
        # ours on 8 hosts and on 1 in alternated pairs, each after the undo of its last run
        results[("ours", 8)], results[("ours", 1)], scaling = paired(deploys[8], deploys[1], repeat, undos[8], undos[1])
        undos[8]()
        undos[1]()
        results[("collection", 8)] = bench_collection(work, base, fleet, py, names, bundle, repeat, kex)
        tag = f" [{kex}]" if kex else ""
        rows.append(
            (f"fleet deploy, 8 hosts: release.pipeline vs Ansible deploy_helper+unarchive{tag}", results[("collection", 8)], results[("ansible", 8)], "")
        )
        rows.append((f"fleet deploy, 8 hosts: release.pipeline vs our CLI (no goal){tag}", results[("collection", 8)], results[("ours", 8)], ""))
        rows.append((f"fleet deploy, 1 host: ours vs Ansible{tag}", results[("ours", 1)], results[("ansible", 1)], ""))
        rows.append((f"fleet deploy, 8 hosts: ours vs Ansible{tag}", results[("ours", 8)], results[("ansible", 8)], ""))
        rows.append((f"fleet deploy: 8 hosts vs 1 host (ours){tag}", results[("ours", 8)], results[("ours", 1)], scaling))
    finally:
        for sock in (base / "ansible-cp").glob("*"):  # Ansible's masters go with their fleet
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)
        fleet.close()
        shutil.rmtree(base, ignore_errors=True)
    return rows


ATTEST = """
import json, sys, time, tarfile, datetime as dt
t0 = time.perf_counter()
from release import provenance, sbom
bundle = sys.argv[1]
with tarfile.open(bundle) as tf:
    m = next(m for m in tf if m.name.endswith("/BUNDLE-MANIFEST.json"))
    doc = json.loads(tf.extractfile(m).read())
t1 = time.perf_counter()
bom = sbom.build(doc["name"], doc["version"], doc["commit"], doc["commit_time"], doc.get("environment"), {})
now = dt.datetime.now(dt.UTC)
provenance.build("x.tar.gz", "0" * 64, repository="repo", commit=doc["commit"], config_sha256="0" * 64, name=doc["name"],
                 version=doc["version"], wheels={}, started=now, finished=now)
print(time.perf_counter() - t0 - (t1 - t0))
"""


def bench_attest(work: Path, release: list[str], bundle: Path, base_cfg: str, repeat: int) -> list[Row]:
    """What the SBOM and the provenance cost a bundle (their imports and their building, in
    a fresh interpreter, against the whole `release bundle`), and what `target.trust` costs
    a deploy (the agent's signature and provenance checks: ssh-keygen twice), in
    alternated pairs with the same deploy without it."""
    rows: list[Row] = []
    costs = []
    for _ in range(repeat):
        cp = subprocess.run([sys.executable, "-c", ATTEST, str(bundle)], capture_output=True, text=True, check=True, cwd=HERE)
        costs.append(float(cp.stdout.strip()))
    whole = best(lambda: sh(*release, "bundle"), repeat, lambda: shutil.rmtree(work / "bundles", ignore_errors=True))
    rows.append(("bundle: SBOM + provenance (fresh imports) vs whole bundle", statistics.median(costs), whole, "   (the goal: at most 5%)"))
    if os.geteuid() != 0:
        print("trust: skipped: the signers file must be root's")
        return rows
    key = work / "bench-key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    signed = next((work / "bundles").glob("*.tar.gz"))
    sums = signed.with_name(signed.name + ".sha256")
    if not sums.with_name(sums.name + ".sig").exists():
        sh("ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "release-bundle", str(sums))
    signers = work / "bench-allowed_signers"
    signers.write_text("bench " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
    signers.chmod(0o644)
    trusted_cfg = work / "release-trust.toml"
    trusted_cfg.write_text(base_cfg + f'trust = "{signers}"\n')
    trusted = [*RELEASE, "--config", str(trusted_cfg)]

    def undo() -> None:
        while subprocess.run([*release, "rollback"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            pass

    ours, floor, note = paired(
        lambda: sh(*trusted, "deploy", "--no-plan", "--bundle", str(signed)),
        lambda: sh(*release, "deploy", "--no-plan", "--bundle", str(signed)),
        repeat,
        undo,
        undo,
    )
    rows.append(("deploy with target.trust vs without", ours, floor, note + "   (the goal: at most +20 ms)"))
    undo()
    return rows


def bench_prune(work: Path, repo: Path, bundle: Path, repeat: int, py: str, count: int = 20) -> Row:
    """``release prune --keep 1`` of ``count`` releases of the synthetic repository (each
    deployed and smoked, one per second: a release folder is named to the second) against
    ``rm -rf`` of as many copies of one, in the same synced state; alternated pairs."""
    root = work / "prune-target"
    cfg = work / "release-prune.toml"
    cfg.write_text(
        f'name = "bench"\nstate = "state-prune"\n[source]\nrepo = "{repo}"\nhead = "HEAD"\n[bundle]\nout = "bundles"\nartifacts = []\n'
        f'[target]\nroot = "{root}"\nstrategy = "timestamped"\ncreate_root = true\npython = "{py}"\n'
        '[[smoke.check]]\nkind = "command"\nargv = ["true"]\n'
    )
    release = [*RELEASE, "--config", str(cfg)]
    copies = work / "prune-copies"

    def releases() -> None:
        while subprocess.run([*release, "rollback"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            pass
        for _ in range(count):
            started = time.monotonic()
            sh(*release, "deploy", "--no-plan", "--bundle", str(bundle))
            sh(*release, "smoke")
            time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))

    def trees() -> None:
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir()
        sh(*release, "deploy", "--no-plan", "--bundle", str(bundle))
        one = next(p for p in (root / "releases").iterdir() if not p.name.startswith("."))
        for i in range(count - 1):  # prune --keep 1 removes all but one
            sh("cp", "-a", str(one), str(copies / f"r{i}"))
        sh(*release, "rollback")

    ours, floor, note = paired(lambda: sh(*release, "prune", "--keep", "1"), lambda: sh("rm", "-rf", str(copies)), repeat, releases, trees)
    return (f"prune --keep 1 of {count} releases vs rm -rf of {count - 1}", ours, floor, note)


def bench_promote(work: Path, repeat: int) -> list[Row]:
    """A fleet promote in waves [1, "100%"] on 8 namespace hosts with a restart (the demo web
    app's restart script: a signal to its server through a pidfile, the new server started)
    and one http health check, against the same promote without them, in alternated pairs
    (each run switches `current` between two deployed releases)."""
    sys.path.insert(0, str(HERE))
    from tests.netns import NsFleet, available
    from tests.support import make_project, write_config
    from tests.webserve import add_web

    why = available()
    if why:
        print(f"promote: skipped: {why}")
        return []
    base = Path(tempfile.mkdtemp(prefix="promote-", dir=work))
    fleet = NsFleet(base, base / "srv", clean_login=True)
    try:
        fleet.start(8)
        repo = make_project(base / "app")
        text = (repo.path / "pyproject.toml").read_text()
        repo.write("pyproject.toml", text.replace('requires-python = ">=3.9"\n', 'requires-python = ">=3.9"\ndependencies = ["gunicorn>=22"]\n'))
        add_web(repo)
        py = os.path.realpath(sys.executable)
        target = {
            "root": f"{fleet.root}/svc",
            "create_root": True,
            "strategy": "timestamped",
            "hosts": [h.name for h in fleet.hosts],
            "ssh_config": str(fleet.ssh_config),
            "python": py,
            "shared": ["run"],
        }
        common = {
            "top": {"name": "demo-app", "state": str(base / "state")},
            "bundle": {"artifacts": ["wheel"]},
            "environment": {},
            "fleet": {"forks": 8, "serial": [1, "100%"]},
        }
        checks = [{"kind": "import", "modules": ["demo_app.web"]}]
        plain = write_config(base / "plain.toml", repo.path, target=target, checks=checks, **common)
        interval = 1.0
        served = write_config(
            base / "service.toml",
            repo.path,
            target=target,
            checks=checks,
            # gunicorn reloads on a HUP to its master: new workers load the release `current` points at
            service={"restart": ["sh", "-c", "kill -HUP $(cat run/app.pid)"], "timeout": 30},
            health=[
                {"kind": "http", "url": "http://127.0.0.1:8000/version", "contains": "demo-app {version} ", "retries": 5, "interval": interval, "timeout": 2}
            ],
            **common,
        )
        # the tool's own part: the same restart machinery and http check, against a server that
        # a signal 0 leaves as it is (no reload: no application's CPU on the shared cores)
        own = write_config(
            base / "own.toml",
            repo.path,
            target=target,
            checks=checks,
            service={"restart": ["sh", "-c", "kill -0 $(cat run/app.pid)"], "timeout": 30},
            health=[{"kind": "http", "url": "http://127.0.0.1:8000/version", "contains": "demo-app ", "retries": 5, "interval": interval, "timeout": 2}],
            **common,
        )
        sh(*RELEASE, "--config", str(plain), "bundle")
        ids = []
        for _ in range(2):
            time.sleep(1.1)  # a release folder is named to the second
            cp = subprocess.run([*RELEASE, "--config", str(plain), "--json", "deploy", "--no-plan"], capture_output=True, text=True, check=True)
            ids.append(json.loads(cp.stdout)["deploy_id"])
        start = write_config(
            base / "start.toml",
            repo.path,
            target=target,
            checks=checks,
            service={"restart": ["{python}", "restart.py", "0.0.0.0", "8000", "gunicorn"], "timeout": 60},
            **common,
        )
        sh(*RELEASE, "--config", str(start), "promote", "--deploy-id", ids[0])  # gunicorn starts on every host
        turn = [1]

        def promote(cfg: Path) -> None:
            sh(*RELEASE, "--config", str(cfg), "promote", "--deploy-id", ids[turn[0] % 2])
            turn[0] += 1

        goal = "   (the goal: at most the intervals waited, none when the first attempt passes, + 0.4s for 2 waves)"
        ours, floor, note = paired(lambda: promote(served), lambda: promote(plain), repeat)
        rows: list[Row] = [("fleet promote, 8 hosts, waves [1, 100%]: restart (gunicorn reload) + http health vs none", ours, floor, note + goal)]
        ours, floor, note = paired(lambda: promote(own), lambda: promote(plain), repeat)
        rows.append(("  the same, the tool's part: a restart that reloads nothing + http health vs none", ours, floor, note + goal))
        return rows
    finally:
        fleet.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
