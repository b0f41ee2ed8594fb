"""The Ansible collection release.pipeline (#25, first part): built from the repository with
the agent as its module_utils (byte for byte), its deploy / status / rollback modules run
by a real ansible-playbook over the local connection and over SSH; idempotent, check mode
changes nothing, and the host holds the truth: a CLI deploy is rolled back by the
collection and a collection deploy by the CLI, each root back byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ..servers import free_port
from ..support import ROOT, Repo, run_release, tree_state, write_config

pytestmark = pytest.mark.slow


def build(dest: Path) -> Path:
    """The collection's tree, assembled by the build script itself (scripts/build_collection.py)."""
    import runpy

    assemble = runpy.run_path(str(ROOT / "scripts" / "build_collection.py"))["assemble"]
    return Path(assemble(dest))


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("collection")).parents[2]  # the ANSIBLE_COLLECTIONS_PATH


def test_the_collection_carries_the_agent_byte_for_byte_and_builds(tmp_path: Path) -> None:
    out = build(tmp_path)
    agent = ROOT / "release" / "agent"
    carried = out / "plugins" / "module_utils" / "agent"
    assert sorted(p.name for p in carried.glob("*.py")) == sorted(p.name for p in agent.glob("*.py"))
    for p in agent.glob("*.py"):
        assert (carried / p.name).read_bytes() == p.read_bytes(), p.name
    from release import __version__

    assert f"version: {__version__}" in (out / "galaxy.yml").read_text()
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    cp = subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(out)], capture_output=True, text=True)
    assert cp.returncode == 0 and (tmp_path / f"release-pipeline-{__version__}.tar.gz").is_file(), cp.stdout + cp.stderr
    for module in ("deploy", "smoke", "promote", "rollback", "status", "verify"):  # each module's documentation renders
        name = f"release.pipeline.{module}"
        doc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-j", name], capture_output=True, text=True, env=_env(out.parents[2]))
        assert doc.returncode == 0, doc.stderr
        rendered = json.loads(doc.stdout)[name]
        assert rendered["doc"]["short_description"] and rendered["examples"] and rendered["return"], name


def _env(collections: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_LOCAL_TEMP": str(collections.parent / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible-release-tests",
    }


def playbook(collections: Path, folder: Path, inventory: Path, tasks: str, *extra: str) -> subprocess.CompletedProcess[str]:
    play = folder / "play.yml"
    play.write_text(f"- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}")
    exe = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(exe), "-i", str(inventory), str(play), *extra], capture_output=True, text=True, env=_env(collections), cwd=folder)


def inventory(folder: Path, transport: dict[str, object], sshd: Any) -> Path:
    py = os.path.realpath(sys.executable)
    inv = folder / "hosts.ini"
    if transport:
        inv.write_text(f"{sshd.host} ansible_python_interpreter={py} ansible_ssh_common_args='-F {sshd.config}'\n")
    else:
        inv.write_text(f"localhost ansible_connection=local ansible_python_interpreter={py}\n")
    return inv


@pytest.fixture
def target(project: Repo, tmp_path: Path, transport: dict[str, object], request: pytest.FixtureRequest) -> dict[str, Any]:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "keep.txt").write_text("the operator's\n")
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), **transport}, checks=[{"kind": "import", "modules": ["demo_app"]}])
    assert run_release("--config", cfg, "bundle").returncode == 0
    sshd = request.getfixturevalue("sshd") if transport else None
    return {"root": root, "cfg": cfg, "inventory": inventory(tmp_path, transport, sshd)}


def test_deploy_is_idempotent_status_lists_it_and_rollback_is_exact(collection: Path, target: dict[str, Any], tmp_path: Path) -> None:
    root, cfg = target["root"], target["cfg"]
    before = tree_state(root)
    tasks = f"""    - name: deploy
      release.pipeline.deploy: {{config: "{cfg}"}}
      register: first
    - name: deploy again
      release.pipeline.deploy: {{config: "{cfg}"}}
      register: again
    - ansible.builtin.assert:
        that: [first is changed, again is not changed, again.deploy_id == first.deploy_id]
    - release.pipeline.status: {{root: "{root}"}}
      register: st
    - ansible.builtin.assert:
        that: ["st.releases | length == 1", "st.releases[0].deploy_id == first.deploy_id"]
    - release.pipeline.rollback: {{root: "{root}", deploy_id: "{{{{ first.deploy_id }}}}"}}
      register: rb
    - ansible.builtin.assert:
        that: [rb is changed, rb.parent_restored]
"""
    cp = playbook(collection, tmp_path, target["inventory"], tasks)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert tree_state(root) == before, "the root is back byte for byte"


def test_check_mode_changes_nothing(collection: Path, target: dict[str, Any], tmp_path: Path) -> None:
    root = target["root"]
    before = tree_state(root)
    tasks = f"""    - release.pipeline.deploy: {{config: "{target["cfg"]}"}}
      register: would
    - ansible.builtin.assert:
        that: [would is changed, "'would create' in would.msg"]
"""
    cp = playbook(collection, tmp_path, target["inventory"], tasks, "--check", "--diff")
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    assert tree_state(root) == before


def test_the_host_holds_the_truth_cli_and_collection_undo_each_other(collection: Path, target: dict[str, Any], tmp_path: Path) -> None:
    root, cfg = target["root"], target["cfg"]
    before = tree_state(root)
    cli = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cli.returncode == 0, cli.stderr
    deploy_id = json.loads(cli.stdout)["deploy_id"]
    cp = playbook(collection, tmp_path, target["inventory"], f'    - release.pipeline.rollback: {{root: "{root}", deploy_id: "{deploy_id}"}}\n')
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    assert tree_state(root) == before, "a CLI deploy rolled back by the collection"
    tasks = f"""    - release.pipeline.deploy: {{config: "{cfg}"}}
      register: landed
    - ansible.builtin.copy:
        content: "{{{{ landed.deploy_id }}}}"
        dest: "{tmp_path}/deploy_id"
      delegate_to: localhost
"""
    cp = playbook(collection, tmp_path, target["inventory"], tasks)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    landed = (tmp_path / "deploy_id").read_text().strip()
    rb = run_release("--config", cfg, "rollback", "--deploy-id", landed)
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert tree_state(root) == before, "a collection deploy rolled back by the CLI, from the host's own records"


def test_the_pipeline_deploy_smoke_promote_verify_and_an_unhealthy_promote_goes_back(
    collection: Path, project: Repo, tmp_path: Path, transport: dict[str, object], request: pytest.FixtureRequest
) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    assert run_release("--config", cfg, "bundle").returncode == 0
    inv = inventory(tmp_path, transport, request.getfixturevalue("sshd") if transport else None)
    tasks = f"""    - release.pipeline.deploy: {{config: "{cfg}"}}
      register: deployed
    - release.pipeline.smoke: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
      register: smoked
    - release.pipeline.promote: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
      register: promoted
    - release.pipeline.verify: {{root: "{root}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - ansible.builtin.assert:
        that: [promoted is changed, "smoked.results | length == 1", "promoted.current.startswith('releases/')"]
"""
    cp = playbook(collection, tmp_path, inv, tasks)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    good = os.readlink(root / "current")
    events = [json.loads(line)["event"] for line in (root / ".release-journal").read_text().splitlines()]
    assert events == ["deployed", "smoke passed", "promoted"], events
    # a second release whose health check cannot pass: the promote fails and current goes back
    time.sleep(1.05)
    unhealthy = write_config(
        tmp_path / "unhealthy.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
        health=[{"kind": "tcp", "address": f"127.0.0.1:{free_port()}", "retries": 0, "timeout": 1}],
    )
    tasks = f"""    - release.pipeline.deploy: {{config: "{unhealthy}"}}
      register: deployed
    - release.pipeline.smoke: {{config: "{unhealthy}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - release.pipeline.promote: {{config: "{unhealthy}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
"""
    cp = playbook(collection, tmp_path, inv, tasks)
    assert cp.returncode != 0 and "the new release was not healthy" in cp.stdout, cp.stdout[-3000:]
    assert os.readlink(root / "current") == good, "current went back to the release it replaced"
    # a good release promoted, then rolled back with the config: `current` goes back to the
    # first one, which the configured restart runs in (before the second's files go)
    time.sleep(1.05)
    marker = tmp_path / "restarted-in"
    served = write_config(
        tmp_path / "served.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
        service={"restart": ["{python}", "-c", f"import os; open({str(marker)!r}, 'w').write(os.path.basename(os.getcwd()))"], "timeout": 30},
    )
    tasks = f"""    - release.pipeline.deploy: {{config: "{served}"}}
      register: deployed
    - release.pipeline.smoke: {{config: "{served}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - release.pipeline.promote: {{config: "{served}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - release.pipeline.rollback: {{root: "{root}", config: "{served}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
      register: rb
    - ansible.builtin.assert:
        that: [rb is changed, rb.parent_restored, rb.service.ok, "rb.back_to == '{good}'"]
"""
    cp = playbook(collection, tmp_path, inv, tasks)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert os.readlink(root / "current") == good and marker.read_text() == good.split("/")[-1], "restarted in the release gone back to"
    # drift is a failed task, with the list
    (root / good / "demo_app" / "core.py").write_text("def answer():\n    return 0\n")
    first_id = json.loads((root / ".release-journal").read_text().splitlines()[0])["deploy_id"]
    cp = playbook(collection, tmp_path, inv, f'    - release.pipeline.verify: {{root: "{root}", deploy_id: "{first_id}"}}\n')
    assert cp.returncode != 0 and "drift in" in cp.stdout and "demo_app/core.py" in cp.stdout, cp.stdout[-3000:]


def test_ansible_test_sanity_passes_offline_of_its_bootstrap_host(tmp_path: Path) -> None:
    """`ansible-test sanity` on the built collection, every test: its pip bootstrap comes from
    the interpreter's own ensurepip and the package index (scripts/ansible_test_get_pip.py,
    saved where ansible-test caches its get-pip script), under a private HOME."""
    import re
    import shutil

    out = build(tmp_path / "build")
    import ansible_test

    pins = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    pip_version = re.search(r"pip='([0-9.]+)'", pins)
    assert pip_version, "ansible-test names the pip version it bootstraps"
    home = tmp_path / "home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "ansible_test_get_pip.py", cache / f"get_pip_{pip_version.group(1).replace('.', '_')}.py")
    subprocess.run(["git", "init", "-q", str(out)], check=True)
    exe = Path(sys.executable).parent / "ansible-test"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = {**os.environ, "HOME": str(home)}
    cp = subprocess.run([str(exe), "sanity", "--local", "--python", version], capture_output=True, text=True, cwd=out, env=env, timeout=1200)
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-5000:]
    assert 'Running sanity test "validate-modules"' in cp.stdout + cp.stderr and 'Running sanity test "pylint"' in cp.stdout + cp.stderr


def test_the_example_playbooks_pass_ansible_lint(tmp_path: Path) -> None:
    """The docs' playbooks (ansible/playbooks/release.yml and undo.yml), with the collection
    installed, pass ansible-lint's production profile, offline."""
    collections = build(tmp_path / "build").parents[2]
    exe = Path(sys.executable).parent / "ansible-lint"
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections), "HOME": str(tmp_path / "home")}
    playbook_dir = ROOT / "ansible" / "playbooks"
    cp = subprocess.run(
        [str(exe), "--offline", "--profile", "production", "release.yml", "undo.yml"], capture_output=True, text=True, cwd=playbook_dir, env=env, timeout=600
    )
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    assert "Passed" in cp.stdout + cp.stderr


def test_the_database_check_runs_once_on_the_controller(collection: Path, project: Repo, tmp_path: Path) -> None:
    """G6 through the same code as `release smoke`: an embedded PostgreSQL with the commit's
    schema, a read-only query that passes, then one that would write, refused."""
    project.write(
        "db/schema.sql",
        "create table t (id int primary key);\ninsert into t values (1), (2);\n"
        "create role context_pack_readonly login nosuperuser nocreaterole nocreatedb nobypassrls;\n"
        "grant usage on schema public to context_pack_readonly;\ngrant select on t to context_pack_readonly;\n",
    )
    project.commit("schema")
    check = {"kind": "db-readonly", "dsn_env": "RELEASE_TEST_UNSET_DSN", "demo": True, "queries": ["select count(*) from t"], "count_tables": ["t"]}
    good = write_config(tmp_path / "good.toml", project.path, checks=[check])
    bad = write_config(tmp_path / "bad.toml", project.path, checks=[{**check, "queries": ["select count(*) from t", "delete from t"]}])
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"localhost ansible_connection=local ansible_python_interpreter={os.path.realpath(sys.executable)}\n")
    tasks = f"""    - release.pipeline.dbcheck: {{config: "{good}"}}
      run_once: true
      delegate_to: localhost
      register: db
    - ansible.builtin.assert:
        that: ["db.checks | length == 1", "db.checks[0].status == 'passed'"]
"""
    cp = playbook(collection, tmp_path, inv, tasks)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    cp = playbook(collection, tmp_path, inv, f'    - release.pipeline.dbcheck: {{config: "{bad}"}}\n      run_once: true\n')
    assert cp.returncode != 0 and "delete" in cp.stdout.lower(), cp.stdout[-3000:]


def test_the_collection_writes_the_same_release_as_the_cli(collection: Path, project: Repo, tmp_path: Path) -> None:
    """One bundle, deployed by the CLI into one root and by the collection into another: the
    same files, the same tree and names digests, the same DEPLOY-MANIFEST but for what names
    the deploy itself (its id, stamp, path, rollback command) and the parent it found."""
    roots = {"cli": tmp_path / "cli", "collection": tmp_path / "coll"}
    cfgs = {k: write_config(tmp_path / f"{k}.toml", project.path, target={"root": str(r), "create_root": True}) for k, r in roots.items()}
    assert run_release("--config", cfgs["cli"], "bundle").returncode == 0
    bundle = next((tmp_path / "bundles").glob("*.tar.gz"))
    assert run_release("--config", cfgs["cli"], "deploy", "--no-plan", "--bundle", str(bundle)).returncode == 0
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"localhost ansible_connection=local ansible_python_interpreter={os.path.realpath(sys.executable)}\n")
    cp = playbook(collection, tmp_path, inv, f'    - release.pipeline.deploy: {{config: "{cfgs["collection"]}", bundle: "{bundle}"}}\n')
    assert cp.returncode == 0, cp.stdout[-3000:]

    def release(root: Path) -> tuple[Path, dict[str, str]]:
        folder = next(p for p in root.iterdir() if (p / "DEPLOY-MANIFEST.txt").is_file())
        lines = dict(line.split(": ", 1) for line in (folder / "DEPLOY-MANIFEST.txt").read_text().splitlines() if ": " in line)
        return folder, lines

    (a, ma), (b, mb) = release(roots["cli"]), release(roots["collection"])
    own = {"deploy_id", "release_stamp", "target", "rollback", "rollback_tool", "parent_listing_sha256_before"}
    assert ma["tree_sha256"] == mb["tree_sha256"] and ma["names_sha256"] == mb["names_sha256"] and ma["files"] == mb["files"]
    assert {k: v for k, v in ma.items() if k not in own} == {k: v for k, v in mb.items() if k not in own}
    files_a = {str(p.relative_to(a)) for p in a.rglob("*")}
    assert files_a == {str(p.relative_to(b)) for p in b.rglob("*")}
