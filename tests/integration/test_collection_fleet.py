"""The collection on a fleet of namespace hosts (#25, part): Ansible's own fan-out (`serial`
waves, `forks`) drives deploy, smoke and promote on 4 hosts, each with its own sshd and
root; a host where the target path is taken fails alone (nothing of it overwritten) while
the others land; a rollback play takes back exactly what landed, every root byte for byte
as before."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..netns import NsFleet, available
from ..support import ROOT, make_project, need, run_release, tree_state, write_config

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

HOSTS = ["h0", "h1", "h2", "h3"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsFleet]:
    why = available()
    need(not why, why)
    base = tmp_path_factory.mktemp("collfleet")
    f = NsFleet(base, base / "srv")
    try:
        f.start(len(HOSTS))
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import runpy

    assemble = runpy.run_path(str(ROOT / "scripts" / "build_collection.py"))["assemble"]
    return Path(assemble(tmp_path_factory.mktemp("coll"))).parents[2]


def run_play(collection: Path, folder: Path, inventory: Path, play: str) -> subprocess.CompletedProcess[str]:
    path = folder / "play.yml"
    path.write_text(play)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collection),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_LOCAL_TEMP": str(folder / "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(folder / "cp"),
    }
    exe = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(exe), "-i", str(inventory), "-f", "4", str(path)], capture_output=True, text=True, env=env, cwd=folder)


def test_waves_land_on_every_good_host_a_taken_path_fails_alone_and_a_rollback_play_undoes_exactly(fleet: NsFleet, collection: Path, tmp_path: Path) -> None:
    repo = make_project(tmp_path / "app")
    root = str(fleet.root / tmp_path.name)
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        target={"root": root, "create_root": True, "strategy": "timestamped"},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    assert run_release("--config", cfg, "bundle").returncode == 0
    roots = {h.name: h.folder / tmp_path.name for h in fleet.hosts}
    # on h2, something the operator made stands where the releases folder would be
    roots["h2"].mkdir(parents=True)
    taken = roots["h2"] / "releases"
    taken.write_text("the operator's\n")
    bundle = next((tmp_path / "bundles").glob("*.tar.gz"))
    before = {h: tree_state(r) if r.exists() else None for h, r in roots.items()}
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[web]\n" + "".join(f"{h} ansible_python_interpreter=python3\n" for h in HOSTS) + f"[web:vars]\nansible_ssh_common_args='-F {fleet.ssh_config}'\n"
    )
    play = f"""- hosts: web
  gather_facts: false
  serial: [1, "100%"]
  tasks:
    - name: deploy
      release.pipeline.deploy: {{config: "{cfg}", bundle: "{bundle}"}}
      register: deployed
    - release.pipeline.smoke: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - release.pipeline.promote: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - ansible.builtin.copy:
        content: "{{{{ deployed.deploy_id }}}}"
        dest: "{tmp_path}/landed-{{{{ inventory_hostname }}}}"
      delegate_to: localhost
"""
    cp = run_play(collection, tmp_path, inventory, play)
    assert cp.returncode != 0 and "is a file, not a folder" in cp.stdout, cp.stdout[-4000:]
    landed = {h: (tmp_path / f"landed-{h}").read_text().strip() for h in HOSTS if (tmp_path / f"landed-{h}").exists()}
    assert set(landed) == {"h0", "h1", "h3"}, landed
    assert taken.read_text() == "the operator's\n", "nothing of h2 was overwritten"
    for h in landed:
        assert os.readlink(roots[h] / "current").startswith("releases/"), h
    # the rollback play: exactly what landed, host by host, by the host's own records
    undo = "- hosts: web\n  gather_facts: false\n  tasks:\n" + "".join(
        f'    - release.pipeline.rollback: {{root: "{root}", deploy_id: "{landed[h]}"}}\n      when: inventory_hostname == "{h}"\n' for h in landed
    )
    cp = run_play(collection, tmp_path, inventory, undo)
    assert cp.returncode == 0, cp.stdout[-4000:]
    for h, r in roots.items():
        assert (tree_state(r) if r.exists() else None) == before[h], f"{h}: the root is back byte for byte"
