"""Fleets on real hosts: network namespaces on a private bridge, each with its own sshd in
its own mount namespace (tests/netns.py). bundle -> deploy -> smoke -> promote in waves ->
rollback, and the faults: a host with no sshd, a host whose target is a tiny tmpfs, a host
whose connection dies mid-transfer, a release tampered on one host before a wave."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from ..netns import NsFleet, available
from ..support import Repo, listing, make_project, need, popen_release, run_release, tree_state, write_config

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

GOOD = [f"h{i}" for i in range(6)]  # h6: no sshd; h7: the target root is a 512 KiB tmpfs


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsFleet]:
    why = available()
    need(not why, why)
    base = tmp_path_factory.mktemp("fleet")
    f = NsFleet(base, base / "srv")
    try:
        f.start(8, no_sshd=(6,), tmpfs={7: "512k"})
        yield f
    finally:
        f.close()


@pytest.fixture
def app(tmp_path: Path) -> Repo:
    repo = make_project(tmp_path / "app")
    repo.write("data/blob.txt", os.urandom(700 * 1024).hex()[: 700 * 1024])  # more than the tiny tmpfs holds
    repo.commit("data")
    return repo


def fleet_cfg(tmp_path: Path, fleet: NsFleet, repo: Repo, hosts: list[str], **fleet_keys: object) -> tuple[Path, str]:
    root = str(fleet.root / tmp_path.name)  # a folder of its own on every host, for this test
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        target={"root": root, "create_root": True, "strategy": "timestamped", "hosts": hosts, "ssh_config": str(fleet.ssh_config), "python": "python3"},
        fleet={"forks": 8, **fleet_keys},
        checks=[{"kind": "import", "modules": ["demo_app"]}, {"kind": "pytest", "args": ["tests", "-q", "-p", "no:benchmark"], "expect_passed": 1}],
    )
    return cfg, root


def host_root(fleet: NsFleet, name: str, tmp_path: Path) -> Path:
    """A host's view of the test's target root, seen from the controller."""
    return fleet.hosts[int(name[1:])].folder / tmp_path.name


def state_of(fleet: NsFleet, names: list[str], tmp_path: Path) -> dict[str, Any]:
    return {n: tree_state(host_root(fleet, n, tmp_path)) if host_root(fleet, n, tmp_path).exists() else None for n in names}


def test_inventory_equals_ansible_inventory(tmp_path: Path) -> None:
    """Hosts and variables read from INI and YAML inventories equal `ansible-inventory --list`."""
    import shutil
    import subprocess

    from release.fleet import inventory

    ansible = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")
    need(Path(ansible).exists(), "ansible-core is not installed (pip install -e .[test])")
    ini = tmp_path / "hosts.ini"
    ini.write_text(
        "lonely ansible_host=10.0.0.9\n[web]\nweb1 ansible_host=10.0.0.1 ansible_port=2201\nweb2 ansible_host=10.0.0.2 ansible_user=deploy\n"
        "[db]\ndb1 ansible_host=10.0.0.3 ansible_python_interpreter=/usr/bin/python3.11\n[app:children]\nweb\ndb\n"
        "[app:vars]\nansible_user=root\nansible_port=22\n[web:vars]\nansible_port=2222\n[edge:children]\nweb\n[edge:vars]\nansible_user=edge\n"
    )
    yml = tmp_path / "hosts.yml"
    yml.write_text(
        "all:\n  hosts:\n    lonely: {ansible_host: 10.0.0.9}\n  children:\n    app:\n      vars: {ansible_user: root, ansible_port: 22}\n"
        "      children:\n        web:\n          vars: {ansible_port: 2222}\n          hosts:\n            web1: {ansible_host: 10.0.0.1, ansible_port: 2201}\n"
        "            web2: {ansible_host: 10.0.0.2, ansible_user: deploy}\n        db:\n          hosts:\n"
        "            db1: {ansible_host: 10.0.0.3, ansible_python_interpreter: /usr/bin/python3.11}\n"
    )
    # host entries with a port, and ranges: numeric with and without padding, letters, a
    # step, two in one name, in an IPv4 address; IPv6 with and without a port
    ranges_ini = tmp_path / "ranges.ini"
    ranges_ini.write_text(
        "solo:2200\n[web]\nweb[01:03].example.com ansible_user=deploy\ndb-[a:c] ansible_port=2222\napp[0:10:5]-[x:y]:2300\n"
        "10.0.0.[1:2]\n[fe80::1]:2201\nfe80::2\nweb01.example.com:9999 extra=1\n[web:vars]\nansible_python_interpreter=/usr/bin/python3\n"
    )
    ranges_yml = tmp_path / "ranges.yml"
    ranges_yml.write_text(
        "all:\n  hosts:\n    solo:2200:\n  children:\n    web:\n      hosts:\n        web[01:03].example.com: {ansible_user: deploy}\n"
        "        db-[a:c]: {ansible_port: 2222}\n        app[0:10:5]-[x:y]:2300:\n        '[fe80::1]:2201':\n        web01.example.com:9999: {extra: 1}\n"
    )
    for path in (ini, yml, ranges_ini, ranges_yml):
        cp = subprocess.run([ansible, "-i", str(path), "--list"], capture_output=True, text=True, env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path)})
        assert cp.returncode == 0, cp.stderr
        theirs = json.loads(cp.stdout)
        ours = inventory.load(path)
        assert {h: ours.host_vars(h) for h in ours.hosts} == theirs["_meta"]["hostvars"], path.name
        for group, body in theirs.items():
            if group == "_meta":
                continue
            assert list(ours.groups[group].get("hosts", [])) == body.get("hosts", []), (path.name, group)
            assert set(ours.groups[group].get("children", [])) == set(body.get("children", [])), (path.name, group)
    # --limit as `ansible all --limit PATTERN --list-hosts` selects: wildcards, ':' and ',' lists, &, !, IPv6
    ranged = inventory.load(ranges_ini)
    patterns = ["web*", "web*:!web02*", "web:&db-*", "fe80::2", "db-a,db-b", "solo:db-a", "app*-y", "all:!web", "10.0.0.*,&web"]
    # subscripts are positions in the pattern's host list (inclusive end), '~' a regex
    patterns += ["web[1:2]", "web[-1]", "web[1:]", "web[0]", "web[0],solo", "web[2:3]:!db-b", "~db-[ab]", "~web0[12]", "~.*example", "all[3]"]
    for pattern in patterns:
        cp = subprocess.run(
            [str(Path(ansible).with_name("ansible")), "-i", str(ranges_ini), "all", "--limit", pattern, "--list-hosts"],
            capture_output=True,
            text=True,
            env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
        )
        assert cp.returncode == 0, cp.stderr
        assert inventory.select(list(ranged.hosts), ranged, pattern) == [line.strip() for line in cp.stdout.splitlines()[1:]], pattern
    assert ranged.members("web")[:3] == ["web01.example.com", "web02.example.com", "web03.example.com"]
    assert ranged.host("app5-y").port == 2300 and ranged.host("web01.example.com").port == 0  # a port only for a new host
    inv = inventory.load(ini)
    assert inventory.select(list(inv.hosts), inv, "web,db1") == ["web1", "web2", "db1"]
    assert inventory.select(list(inv.hosts), inv, "app,!web2") == ["web1", "db1"]


def test_fleet_through_bundle_deploy_smoke_promote_rollback(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\n" + "".join(f"{h}\n" for h in GOOD[:4]) + "[workers]\n" + "".join(f"{h}\n" for h in GOOD[4:]) + "[app:children]\nweb\nworkers\n")
    cfg, root = fleet_cfg(tmp_path, fleet, app, [], serial=[1, "50%"])
    cfg.write_text(cfg.read_text().replace("hosts = []", f'inventory = "{inv}"\ngroup = "app"'))
    before = state_of(fleet, GOOD, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert sorted(res["hosts"]) == GOOD and len({r["deploy_id"] for r in res["hosts"].values()}) == 1, "one deploy id for the fleet"
    for h in GOOD:
        assert list((host_root(fleet, h, tmp_path) / "releases").iterdir()), f"{h} holds the release in its own filesystem"
    assert not (fleet.root / tmp_path.name).exists() or not list((fleet.root / tmp_path.name).iterdir()), "the controller's own view is untouched"
    cp = run_release("--config", cfg, "--json", "smoke")
    assert cp.returncode == 0, cp.stdout[-2000:]
    junit = ET.parse(Path(json.loads(cp.stdout)["report"]) / "junit.xml").getroot()
    cases = [c.get("name") for c in junit.iter("testcase")]
    assert all(any(str(c).startswith(f"{h}: ") for c in cases) for h in GOOD), "one testcase per host and check"
    cp = run_release("--config", cfg, "--json", "--limit", "web", "status")
    assert cp.returncode == 0 and sorted(json.loads(cp.stdout)["hosts"]) == GOOD[:4]
    cp = run_release("--config", cfg, "promote")
    assert cp.returncode == 0, cp.stderr
    assert "wave 1: h0" in cp.stdout and "wave 2: h1, h2, h3" in cp.stdout and "wave 3: h4, h5" in cp.stdout
    for h in GOOD:
        assert os.readlink(host_root(fleet, h, tmp_path) / "current").startswith("releases/")
    assert run_release("--config", cfg, "verify").returncode == 0
    cp = run_release("--config", cfg, "--json", "rollback")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert all(r["parent_restored"] for r in json.loads(cp.stdout)["hosts"].values())
    after = state_of(fleet, GOOD, tmp_path)
    for h in GOOD:  # the roots were created by the deploy (create_root); what is left is empty
        assert after[h] in (before[h], {".": after[h]["."]} if after[h] else None), h
        assert not os.path.lexists(host_root(fleet, h, tmp_path) / "current")


def test_an_unreachable_host_rolls_the_fleet_back(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    hosts = [*GOOD[:3], "h6"]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts)
    for h in GOOD[:3]:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, GOOD[:3], tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 1
    assert "h6 (unreachable" in cp.stderr
    assert state_of(fleet, GOOD[:3], tmp_path) == before, "every host where the release landed was rolled back exactly"


def test_a_full_disk_under_the_threshold_is_reported_and_the_record_says_who_holds_it(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    hosts = [*GOOD[:5], "h7"]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts, max_fail_percentage=20)
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert res["status"] == "partial" and "h7" in res["failed_hosts"] and "disk full" in res["failed_hosts"]["h7"]
    record = json.loads((tmp_path / ".release" / "fleet" / f"{res['deploy_id']}.json").read_text())
    assert sorted(record["landed"]) == GOOD[:5]
    cp = run_release("--config", cfg, "--json", "smoke")
    assert cp.returncode == 0, "smoke covers the hosts that hold the release"
    assert run_release("--config", cfg, "rollback").returncode == 0


def test_a_connection_killed_mid_transfer_rolls_back_and_a_rerun_starts_clean(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:

    hosts = GOOD[:4]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts)
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    flag = fleet.root / tmp_path.name / "paused"  # each host pauses with its own flag, in its own filesystem
    pause = {"RELEASE_TEST_PAUSE_AT": f"deploy:staged@{flag}"}
    p = popen_release("--config", cfg, "--json", "deploy", "--no-plan", env=pause)
    flags = [host_root(fleet, h, tmp_path) / "paused" for h in hosts]
    end = time.time() + 60
    while not all(f.exists() for f in flags) and time.time() < end:
        time.sleep(0.05)
    assert all(f.exists() for f in flags), "every host is receiving the bundle"
    victim = fleet.hosts[3]
    victim.kill()  # h3's connection dies mid-transfer (its sshd, session and agent are gone)
    for f in flags[:3]:
        f.unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert "h3 (" in err and ("connection lost" in err or "unreachable" in err), err
    assert state_of(fleet, hosts[:3], tmp_path) == before[:3] if isinstance(before, list) else True
    for h in hosts[:3]:
        assert not list((host_root(fleet, h, tmp_path)).glob("releases/*")), f"{h}: rolled back"
    fleet.start_sshd(victim)  # the fault is fixed
    fleet.wait(victim)
    (host_root(fleet, "h3", tmp_path) / "paused").unlink(missing_ok=True)
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan", "--break-lock")
    assert cp.returncode == 0, cp.stderr
    for h in hosts:
        assert not [n for n in listing(host_root(fleet, h, tmp_path)) if n.startswith(".release-tmp")], f"{h}: leftovers cleaned"
    assert run_release("--config", cfg, "rollback").returncode == 0


def test_an_interrupted_fleet_deploy_starts_no_new_host_and_rollback_undoes_exactly_what_it_reached(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """Ctrl-C during a fleet deploy (forks 2): the two hosts in flight finish, the others are
    never started; the fleet record, written before any host was touched, says the deploy
    never finished; status says so, and a plain rollback undoes it on the two hosts it
    reached (before: every queued host was still deployed, and with no fleet record the
    rollback picked an older deploy)."""
    import signal

    hosts = GOOD[:5]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts, forks=2)
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    flag = fleet.root / tmp_path.name / "paused"  # each host's own, in its own filesystem
    p = popen_release("--config", cfg, "deploy", "--no-plan", env={"RELEASE_TEST_PAUSE_AT": f"deploy:staged@{flag}"})
    flags = [host_root(fleet, h, tmp_path) / "paused" for h in hosts]
    end = time.time() + 60
    while not all(f.exists() for f in flags[:2]) and time.time() < end:
        time.sleep(0.05)
    assert all(f.exists() for f in flags[:2]), "the first two hosts are receiving the bundle"
    p.send_signal(signal.SIGINT)
    time.sleep(1)
    for f in flags[:2]:
        f.unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "interrupted" in err and "release rollback" in err, err
    assert [h for h in hosts if list(host_root(fleet, h, tmp_path).glob("releases/*"))] == hosts[:2], "no host started after the interrupt"
    assert not any(f.exists() for f in flags[2:])
    st = run_release("--config", cfg, "status")
    assert "never finished" in st.stdout, st.stdout
    pr = run_release("--config", cfg, "promote")
    assert pr.returncode == 3 and "never finished" in pr.stderr and "release rollback" in pr.stderr, "no other stage acts on it"
    rb = run_release("--config", cfg, "rollback")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert rb.stdout.count("root back to its pre-deploy state") == 2 and rb.stdout.count("never reached it") == 3, rb.stdout
    assert state_of(fleet, hosts, tmp_path) == before, "every host's root is back to its state before the deploy"
    assert "never finished" not in run_release("--config", cfg, "status").stdout


def test_a_failed_wave_stops_the_promotion_and_switched_hosts_point_back(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    hosts = GOOD
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts, serial=[1, 2, "100%"])
    assert run_release("--config", cfg, "bundle").returncode == 0
    first = json.loads(run_release("--config", cfg, "--json", "deploy", "--no-plan").stdout)["deploy_id"]
    assert run_release("--config", cfg, "promote").returncode == 0
    previous = {h: os.readlink(host_root(fleet, h, tmp_path) / "current") for h in hosts}
    time.sleep(1.1)
    app.write("demo_app/core.py", "def answer():\n    return 42  # v2\n")
    app.commit("v2")
    assert run_release("--config", cfg, "bundle").returncode == 0
    second = json.loads(run_release("--config", cfg, "--json", "deploy", "--no-plan").stdout)["deploy_id"]
    assert second != first
    # tamper with the new release on h2 (wave 2) before the promotion
    releases = (host_root(fleet, "h2", tmp_path) / "releases").iterdir()
    rel = next(p for p in releases if (p / "DEPLOY-MANIFEST.txt").is_file() and f"deploy_id: {second}" in (p / "DEPLOY-MANIFEST.txt").read_text())
    (rel / "demo_app" / "core.py").write_text("def answer():\n    return 0\n")
    cp = run_release("--config", cfg, "promote")
    assert cp.returncode == 1 and "wave 2 failed on h2" in cp.stderr, cp.stdout + cp.stderr
    assert "never touched: h3, h4, h5" in cp.stdout
    for h in hosts:
        assert os.readlink(host_root(fleet, h, tmp_path) / "current") == previous[h], f"{h} points at its previous release"


def test_g6_through_the_target_reaches_a_database_only_that_host_sees(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """PostgreSQL listens only inside h1's network namespace: the controller reaches it only
    through an OpenSSH forward over h1's connection, and runs the same layers and proof."""
    from release.db import pgdemo

    from ..support import EXAMPLE

    need(pgdemo.bindir() is not None, "PostgreSQL server binaries not installed (apt-get install postgresql)")
    with pgdemo.server(netns=fleet.hosts[1].ns) as srv:
        local = pgdemo.seed(srv, (EXAMPLE / "db" / "schema.sql").read_text(), "context_pack_readonly")
        password = local.rsplit("password=", 1)[1]
        dsn = f"host=127.0.0.1 port=5432 user=context_pack_readonly dbname=app password={password}"
        check = {
            "kind": "db-readonly",
            "dsn_env": "APP_RO_DSN",
            "role": "context_pack_readonly",
            "queries": ["select count(*) from iu"],
            "count_tables": ["iu"],
            "via": "target",
        }
        cfg, _ = fleet_cfg(tmp_path, fleet, app, ["h1", "h2"])
        cfg.write_text(cfg.read_text() + "[[smoke.check]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in check.items()))
        assert run_release("--config", cfg, "bundle").returncode == 0
        assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
        temp = Path(tempfile.mkdtemp(prefix="pf", dir="/tmp"))  # the run's own: the other worker's forwards use /tmp
        cp = run_release("--config", cfg, "--json", "smoke", env={"APP_RO_DSN": dsn, "TMPDIR": str(temp)})
        res = json.loads(cp.stdout)
        db = next(c for c in res["checks"] if c["kind"] == "db-readonly")
        assert cp.returncode == 0 and db["status"] == "passed", db
        assert "through h1" in db["detail"] and db["data"]["statements"][0]["no_xid"] is True
        assert password not in cp.stdout + cp.stderr
        # without the forward the controller cannot reach it
        cfg.write_text(cfg.read_text().replace('via = "target"', 'via = "controller"'))
        cp = run_release("--config", cfg, "--json", "smoke", env={"APP_RO_DSN": dsn, "TMPDIR": str(temp)})
        db = next(c for c in json.loads(cp.stdout)["checks"] if c["kind"] == "db-readonly")
        assert db["status"] == "failed" and "connect" in db["detail"]
        assert not list(temp.iterdir()), "the forward's private folder (and the run's ssh folder) are gone"
        temp.rmdir()
        assert run_release("--config", cfg, "rollback").returncode == 0


def test_never_more_than_ten_new_connections_at_once(tmp_path: Path, app: Repo) -> None:
    """An sshd that refuses an 11th unauthenticated connection (MaxStartups 10, as sshd's
    default starts to), 16 host names for it and forks = 16: every host gets in, because
    connections are opened 10 at a time. The same 16 connections opened all at once by
    plain ssh are refused in part: the limit is real."""
    import subprocess

    from ..servers import start_sshd

    (tmp_path / "sshd").mkdir()
    server, why = start_sshd(tmp_path / "sshd", max_startups="10")
    need(server is not None, why)
    assert server is not None
    try:
        block = server.config.read_text().split("Host testhost\n", 1)[1]
        names = [f"n{i:02d}" for i in range(16)]
        ssh_config = tmp_path / "ssh_config16"
        ssh_config.write_text("".join(f"Host {n}\n{block}" for n in names))
        raw = [subprocess.Popen(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", n, "true"], stderr=subprocess.DEVNULL) for n in names]
        assert any(p.wait(timeout=60) != 0 for p in raw), "sshd's MaxStartups refused none of 16 simultaneous connections"
        root = tmp_path / "root"
        root.mkdir()
        cfg = write_config(tmp_path / "release.toml", app.path, target={"root": str(root), "hosts": names, "ssh_config": str(ssh_config)}, fleet={"forks": 16})
        cp = run_release("--config", cfg, "--json", "status")
        assert cp.returncode == 0, cp.stderr
        hosts = json.loads(cp.stdout)["hosts"]
        assert sorted(hosts) == names and not any("error" in r for r in hosts.values()), hosts
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def test_a_host_that_lies_in_its_answer_is_that_hosts_failure_and_the_fleet_is_undone(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """h1's interpreter runs the real deploy (its release lands) and then answers with JSON
    nested 100,000 deep. The controller once died of a RecursionError there, so the
    all-or-nothing undo never ran. Now that answer is h1's unknown outcome: the deploy fails
    (exit 1), every host is undone, h1 included once its own records are read, and every
    root is as it was."""
    hosts = GOOD[:3]
    liar = tmp_path / "python-liar"
    liar.write_text(
        '#!/bin/sh\nif [ "$5" = deploy ]; then\n  python3 "$@" >/dev/null\n  python3 -c \'print("[" * 100000 + "]" * 100000)\'\nelse\n  exec python3 "$@"\nfi\n'
    )
    liar.chmod(0o755)
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"[web]\nh0\nh1 ansible_python_interpreter={liar}\nh2\n")
    cfg, _ = fleet_cfg(tmp_path, fleet, app, [])
    cfg.write_text(cfg.read_text().replace("hosts = []", f'inventory = "{inv}"\ngroup = "web"'))
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 1, cp.stderr
    assert "Traceback" not in cp.stderr and "RecursionError" not in cp.stderr, cp.stderr
    assert "h1 (connection lost" in cp.stderr or "h1 (outcome unknown" in cp.stderr, cp.stderr
    res = json.loads(cp.stdout)
    assert res["status"] == "rolled-back" and all(not r.startswith("undo failed") for r in res["undo"].values()), res["undo"]
    assert state_of(fleet, hosts, tmp_path) == before, "every host, the liar included, is back to its state before the deploy"


def _inventory_cfg(tmp_path: Path, fleet: NsFleet, app: Repo, lines: list[str]) -> Path:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\n" + "".join(f"{line}\n" for line in lines))
    cfg, _ = fleet_cfg(tmp_path, fleet, app, [])
    cfg.write_text(cfg.read_text().replace("hosts = []", f'inventory = "{inv}"\ngroup = "web"'))
    return cfg


def test_a_failed_undo_keeps_the_host_a_holder_until_rollback_reaches_it(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """h1's release lands but its answer is lost, and h1 stays unreachable for the undo: the
    fleet record must not say rolled back. It stays live with h1 as a possible holder; once
    h1 answers again, a plain `rollback` reaches it and every root is as it was."""
    hosts = GOOD[:3]
    healed = tmp_path / "healed"
    flaky = tmp_path / "python-flaky"
    flaky.write_text(f'#!/bin/sh\n[ -e {healed} ] && exec python3 "$@"\nif [ "$5" = deploy ]; then python3 "$@" >/dev/null; exit 255; fi\nexit 255\n')
    flaky.chmod(0o755)
    cfg = _inventory_cfg(tmp_path, fleet, app, ["h0", f"h1 ansible_python_interpreter={flaky}", "h2"])
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    healed.touch()
    assert run_release("--config", cfg, "bundle").returncode == 0
    healed.unlink()
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 1, cp.stderr
    res = json.loads(cp.stdout)
    assert res["undo"]["h1"].startswith("undo failed") and res["status"] == "undo-failed", res
    assert "rolled back on every host" not in cp.stderr and "may still hold the release" in cp.stderr, cp.stderr
    record = json.loads((tmp_path / ".release" / "fleet" / f"{res['deploy_id']}.json").read_text())
    assert record["status"] == "undo-failed" and record["landed"] == ["h1"], record
    for stage in ("promote", "smoke"):
        cp = run_release("--config", cfg, stage)
        assert cp.returncode == 3 and "release rollback" in cp.stderr, (stage, cp.stderr)
    assert list(host_root(fleet, "h1", tmp_path).glob("releases/*")), "the release is still on h1"
    healed.touch()
    rb = run_release("--config", cfg, "rollback")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert state_of(fleet, hosts, tmp_path) == before


def test_a_limited_rollback_leaves_the_rest_of_the_fleet_deploy_live(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """`--limit h1 rollback` of the newer of two fleet deploys: the record keeps h0 and h2 as
    holders, so the next plain rollback undoes the same deploy there (not the older one);
    the older release stays on every host."""
    hosts = GOOD[:3]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts)
    assert run_release("--config", cfg, "bundle").returncode == 0
    first = json.loads(run_release("--config", cfg, "--json", "deploy", "--no-plan").stdout)["deploy_id"]
    time.sleep(1.1)
    app.write("demo_app/core.py", "def answer():\n    return 42  # v2\n")
    app.commit("v2")
    assert run_release("--config", cfg, "bundle").returncode == 0
    second = json.loads(run_release("--config", cfg, "--json", "deploy", "--no-plan").stdout)["deploy_id"]

    def ids(h: str) -> set[str]:
        return {
            line.split(": ", 1)[1]
            for p in host_root(fleet, h, tmp_path).glob("releases/*/DEPLOY-MANIFEST.txt")
            for line in p.read_text().splitlines()
            if line.startswith("deploy_id: ")
        }

    cp = run_release("--config", cfg, "--limit", "h1", "rollback")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    record = json.loads((tmp_path / ".release" / "fleet" / f"{second}.json").read_text())
    assert record["status"] == "partial" and sorted(record["landed"]) == ["h0", "h2"], record
    cp = run_release("--config", cfg, "--json", "rollback")
    assert cp.returncode == 0 and json.loads(cp.stdout)["deploy_id"] == second, cp.stdout + cp.stderr
    assert {h: ids(h) for h in hosts} == {h: {first} for h in hosts}


def test_a_killed_fleet_rollback_converges_on_the_next_run(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """Every host's rollback agent is killed right after it removed the release: the run
    exits 1 (outcomes unknown). The rerun settles each host from what it holds, counts
    "already rolled back" as done, and exits 0 with every root as it was."""
    hosts = GOOD[:3]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts)
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    cp = run_release("--config", cfg, "rollback", env={"RELEASE_TEST_KILL_AT": "rollback:removed"})
    assert cp.returncode == 1, cp.stdout + cp.stderr
    cp = run_release("--config", cfg, "rollback", "--break-lock")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert state_of(fleet, hosts, tmp_path) == before
    assert run_release("--config", cfg, "rollback").returncode == 3, "nothing live is left to roll back"


def test_a_second_shell_cannot_act_on_the_fleet_while_a_deploy_runs(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """A rollback from a second shell during a fleet deploy once removed the release from two
    of three hosts, and the deploy then recorded "deployed" on all three. The fleet lock
    refuses it (exit 4, naming the holder); the deploy finishes and its record is true;
    after it, the lock is free again."""
    hosts = GOOD[:3]
    cfg, _ = fleet_cfg(tmp_path, fleet, app, hosts)
    assert run_release("--config", cfg, "bundle").returncode == 0
    flag = fleet.root / tmp_path.name / "paused"
    p = popen_release("--config", cfg, "--json", "deploy", "--no-plan", env={"RELEASE_TEST_PAUSE_AT": f"deploy:staged@{flag}"})
    flags = [host_root(fleet, h, tmp_path) / "paused" for h in hosts]
    end = time.time() + 60
    while not all(f.exists() for f in flags) and time.time() < end:
        time.sleep(0.05)
    assert all(f.exists() for f in flags)
    try:
        for stage in ("rollback", "promote", "deploy"):
            cp = run_release("--config", cfg, stage, *(["--no-plan"] if stage == "deploy" else []))
            assert cp.returncode == 4 and "fleet" in cp.stderr and "locked" in cp.stderr, (stage, cp.returncode, cp.stderr)
    finally:
        for f in flags:
            f.unlink(missing_ok=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    res = json.loads(out)
    assert res["status"] == "deployed"
    for h in hosts:
        assert list(host_root(fleet, h, tmp_path).glob("releases/*")), f"{h} holds the release the record says it holds"
    assert run_release("--config", cfg, "rollback").returncode == 0, "the lock was released"


def test_a_lost_promote_answer_is_reverted_by_the_hosts_own_record(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """h1 switches `current` to B, then its answer is lost: wave 2 fails. The revert covers h1
    too (it asks h1 to go back by the pointer h1 wrote before switching), so every host
    points at A again; a later rollback of B leaves every `current` on A."""
    hosts = GOOD[:3]
    honest = tmp_path / "honest"
    honest.touch()
    flaky = tmp_path / "python-flaky"
    flaky.write_text(f'#!/bin/sh\n[ -e {honest} ] && exec python3 "$@"\nif [ "$5" = promote ]; then python3 "$@" >/dev/null; exit 255; fi\nexec python3 "$@"\n')
    flaky.chmod(0o755)
    cfg = _inventory_cfg(tmp_path, fleet, app, ["h0", f"h1 ansible_python_interpreter={flaky}", "h2"])
    cfg.write_text(cfg.read_text().replace("[fleet]", '[fleet]\nserial = [1, "100%"]'))
    assert run_release("--config", cfg, "bundle").returncode == 0
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    assert run_release("--config", cfg, "promote").returncode == 0
    first = {h: os.readlink(host_root(fleet, h, tmp_path) / "current") for h in hosts}
    time.sleep(1.1)
    app.write("demo_app/core.py", "def answer():\n    return 42  # v2\n")
    app.commit("v2")
    assert run_release("--config", cfg, "bundle").returncode == 0
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    honest.unlink()
    cp = run_release("--config", cfg, "--json", "promote")
    assert cp.returncode == 1 and "h1" in cp.stderr, cp.stdout + cp.stderr
    honest.touch()
    assert {h: os.readlink(host_root(fleet, h, tmp_path) / "current") for h in hosts} == first, "every host points back at A, h1 included"
    rb = run_release("--config", cfg, "rollback")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert {h: os.readlink(host_root(fleet, h, tmp_path) / "current") for h in hosts} == first


def _hung_python(tmp_path: Path) -> tuple[Path, str]:
    """An interpreter whose deploy reads its input and then hangs, on a healthy connection."""
    marker = f"hung-agent-{tmp_path.name}"
    hung = tmp_path / "python-hung"
    hung.write_text(f'#!/bin/sh\nif [ "$5" = deploy ]; then cat >/dev/null; exec python3 -c "import time; time.sleep(900)" {marker}; fi\nexec python3 "$@"\n')
    hung.chmod(0o755)
    return hung, marker


def test_a_hung_host_is_bounded_by_the_ops_deadline(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """h1's agent hangs after reading the bundle. With target.op_timeout = 8 its deploy is an
    unknown outcome after 8 s, the fleet is undone and the command ends; every root as it was."""
    import subprocess

    hosts = GOOD[:3]
    hung, marker = _hung_python(tmp_path)
    cfg = _inventory_cfg(tmp_path, fleet, app, ["h0", f"h1 ansible_python_interpreter={hung}", "h2"])
    cfg.write_text(cfg.read_text().replace("[target]", "[target]\nop_timeout = 8"))
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    try:
        started = time.monotonic()
        cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
        took = time.monotonic() - started
        assert cp.returncode == 1 and "h1 (connection lost" in cp.stderr and "deadline" in cp.stderr, cp.stderr[-3000:]
        assert took < 60, f"the deploy took {took:.0f} s"
        assert state_of(fleet, hosts, tmp_path) == before
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)


def test_an_interrupt_bounds_the_wait_for_a_hung_host(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """No deadline set: h1 hangs, h0 and h2 land. One Ctrl-C: the command stops within the
    grace period (h1's connection is stopped, its outcome unknown), and a plain rollback
    then restores every root."""
    import signal
    import subprocess

    hosts = GOOD[:3]
    hung, marker = _hung_python(tmp_path)
    cfg = _inventory_cfg(tmp_path, fleet, app, ["h0", f"h1 ansible_python_interpreter={hung}", "h2"])
    for h in hosts:
        host_root(fleet, h, tmp_path).mkdir(parents=True, exist_ok=True)
    before = state_of(fleet, hosts, tmp_path)
    assert run_release("--config", cfg, "bundle").returncode == 0
    try:
        p = popen_release("--config", cfg, "deploy", "--no-plan", env={"PYTHONFAULTHANDLER": "1"})
        end = time.time() + 60
        while time.time() < end and not all(list(host_root(fleet, h, tmp_path).glob("releases/*/DEPLOY-MANIFEST.txt")) for h in ("h0", "h2")):
            time.sleep(0.1)
        time.sleep(0.5)
        started = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            out, err = p.communicate(timeout=20)
            raise AssertionError(err[-6000:]) from None
        took = time.monotonic() - started
        assert p.returncode == 1 and "interrupted" in err and "release rollback" in err, err[-3000:]
        assert took < 30, f"the interrupt took {took:.0f} s to stop the run"
        rb = run_release("--config", cfg, "rollback")
        assert rb.returncode == 0, rb.stdout + rb.stderr
        assert state_of(fleet, hosts, tmp_path) == before
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)


def test_the_ssh_destination_is_ansible_host_as_ansible_makes_it(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """An operator's ssh_config written for Ansible is keyed by the inventory's
    ``ansible_host`` addresses (Ansible hands ssh that address, with ``ansible_port`` and
    ``ansible_user`` as options). The fleet connects the same way: a real ``ansible -m ping``
    and ``release status`` both reach the hosts through that file; an unreachable host's row
    shows OpenSSH's own reason."""
    import shutil
    import subprocess

    keys = fleet.base / "keys"
    h0, h1, down = fleet.hosts[0], fleet.hosts[1], fleet.hosts[6]  # h6 runs no sshd
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host {h0.address} {h1.address} {down.address}\n  IdentityFile {keys / 'client'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {keys / 'known_hosts'}\n  StrictHostKeyChecking yes\n  ConnectTimeout 5\n"
    )
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        f"[web]\nweb0 ansible_host={h0.address} ansible_user=root\nweb1 ansible_host={h1.address} ansible_user=root ansible_port=22\n[down]\nweb6 ansible_host={down.address} ansible_user=root\n"
    )
    ansible = shutil.which("ansible") or str(Path(sys.executable).parent / "ansible")
    need(Path(ansible).exists(), "ansible-core is not installed (pip install -e .[test])")
    env = {**os.environ, "ANSIBLE_SSH_ARGS": f"-F {ssh_config}", "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_DEPRECATION_WARNINGS": "False"}
    python = os.path.realpath(sys.executable)  # the hosts share this machine's files
    ping = subprocess.run(
        [ansible, "-i", str(inv), "web", "-m", "ping", "-e", f"ansible_python_interpreter={python}"], capture_output=True, text=True, env=env, timeout=120
    )
    assert ping.returncode == 0 and ping.stdout.count("SUCCESS") == 2, ping.stdout + ping.stderr

    cfg = write_config(
        tmp_path / "release.toml",
        app.path,
        target={"root": str(fleet.root / tmp_path.name), "create_root": True, "inventory": str(inv), "group": "web", "ssh_config": str(ssh_config)},
    )
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0, st.stderr
    assert sorted(json.loads(st.stdout)["hosts"]) == ["web0", "web1"]

    cfg = write_config(
        tmp_path / "release.toml",
        app.path,
        target={"root": str(fleet.root / tmp_path.name), "create_root": True, "inventory": str(inv), "group": "down", "ssh_config": str(ssh_config)},
    )
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 1
    row = json.loads(st.stdout)["hosts"]["web6"]["error"]
    assert "unreachable" in row and ("Connection refused" in row or "timed out" in row or "No route to host" in row), row


def test_an_inventorys_key_file_and_ssh_args_reach_the_hosts_as_ansible_gives_them(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """The key and the host-key settings live only in the inventory, as Ansible inventories
    often hold them (``ansible_ssh_private_key_file``, ``ansible_ssh_common_args='-o
    UserKnownHostsFile=... -o StrictHostKeyChecking=yes'``), with an ssh_config that names
    neither: a real ``ansible -m ping`` and the fleet both get in (before, the fleet ignored
    both variables and was refused). An option that runs a command there (ProxyCommand) is
    exit 2 naming the host and the variable, and nothing runs it."""
    import shutil
    import subprocess

    keys = fleet.base / "keys"
    h0, h1 = fleet.hosts[0], fleet.hosts[1]
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host {h0.address} {h1.address}\n  IdentitiesOnly yes\n  ConnectTimeout 5\n  BatchMode yes\n")
    common = f"-o UserKnownHostsFile={keys / 'known_hosts'} -o StrictHostKeyChecking=yes"
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        f"[web]\nweb0 ansible_host={h0.address}\nweb1 ansible_host={h1.address}\n"
        f"[web:vars]\nansible_user=root\nansible_ssh_private_key_file={keys / 'client'}\nansible_ssh_common_args='{common}'\n"
    )
    ansible = shutil.which("ansible") or str(Path(sys.executable).parent / "ansible")
    need(Path(ansible).exists(), "ansible-core is not installed (pip install -e .[test])")
    env = {**os.environ, "ANSIBLE_SSH_ARGS": f"-F {ssh_config}", "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_DEPRECATION_WARNINGS": "False"}
    python = os.path.realpath(sys.executable)
    ping = subprocess.run(
        [ansible, "-i", str(inv), "web", "-m", "ping", "-e", f"ansible_python_interpreter={python}"], capture_output=True, text=True, env=env, timeout=120
    )
    assert ping.returncode == 0 and ping.stdout.count("SUCCESS") == 2, ping.stdout + ping.stderr
    target = {"root": str(fleet.root / tmp_path.name), "create_root": True, "inventory": str(inv), "group": "web", "ssh_config": str(ssh_config)}
    cfg = write_config(tmp_path / "release.toml", app.path, target=target)
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0, st.stdout[-2000:] + st.stderr[-2000:]
    assert sorted(json.loads(st.stdout)["hosts"]) == ["web0", "web1"]

    marker = tmp_path / "ran"
    inv.write_text(inv.read_text().replace(common, f'-o ProxyCommand="touch {marker}; nc %h %p"'))
    st = run_release("--config", cfg, "status")
    assert st.returncode == 2 and "ansible_ssh_common_args of web0 sets ssh option 'proxycommand'" in st.stderr, st.stderr
    assert not marker.exists()


def test_a_fleet_plan_shows_each_hosts_verdict_and_locks_only_when_all_pass(tmp_path: Path, fleet: NsFleet, app: Repo) -> None:
    """`plan` on a fleet: a host it would block is shown blocked (never "ok"), with OpenSSH's
    own reason for an unreachable one, and the exit code is a blocked gate's; the lock is
    written only when every host passes."""
    cfg, _ = fleet_cfg(tmp_path, fleet, app, ["h0", "h1"])
    ok = run_release("--config", cfg, "plan")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / ".release" / "plan.lock").is_file()
    assert "h0" in ok.stdout and "h1" in ok.stdout and "PASS: every gate" in ok.stdout
    (tmp_path / ".release" / "plan.lock").unlink()

    cfg, _ = fleet_cfg(tmp_path, fleet, app, ["h0", "h6"])  # h6 runs no sshd
    cp = run_release("--config", cfg, "plan")
    assert cp.returncode == 3, cp.stdout + cp.stderr
    assert "h6: plan: ok" not in cp.stderr
    row = next(line for line in cp.stdout.splitlines() if line.startswith("h6 "))
    assert "FAILED" in row and ("Connection refused" in row or "timed out" in row or "No route" in row), row
    assert not (tmp_path / ".release" / "plan.lock").exists()
    js = run_release("--config", cfg, "--json", "plan")
    assert js.returncode == 3 and json.loads(js.stdout)["exit_code"] == 3


def test_an_inventory_host_with_ansible_connection_local_is_this_machine(tmp_path: Path, app: Repo) -> None:
    """`localhost ansible_connection=local` (Ansible runs such a host on the controller, no
    ssh): the fleet deploys, lists and rolls it back here, the root back byte for byte; it
    was reached over ssh (and refused). A connection this tool has no way to make
    (`ansible_connection=docker`: ssh would have reached whatever machine answers to the
    container's name) is exit 2 naming it."""
    from ..support import tree_state

    root = tmp_path / "srv"
    root.mkdir()
    (root / "keep.txt").write_text("the operator's\n")
    before = tree_state(root)
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"[web]\nlocalhost ansible_connection=local ansible_python_interpreter={os.path.realpath(sys.executable)}\n")
    cfg = write_config(tmp_path / "release.toml", app.path, target={"root": str(root), "inventory": str(inv), "group": "web"})
    assert run_release("--config", cfg, "bundle").returncode == 0
    dep = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0 and len(json.loads(st.stdout)["hosts"]["localhost"]["releases"]) == 1, st.stdout[-2000:]
    assert run_release("--config", cfg, "rollback").returncode == 0
    assert tree_state(root) == before
    inv.write_text("[web]\napp1 ansible_connection=community.docker.docker\n")
    st = run_release("--config", cfg, "status")
    assert st.returncode == 2 and "ansible_connection of app1 is 'community.docker.docker'" in st.stderr, st.stderr
