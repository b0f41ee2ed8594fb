"""Supply chain (#24 items 1, 2, 3, 5): every bundle carries a CycloneDX 1.6 SBOM (inside and
beside it) and an in-toto / SLSA v1 provenance statement (beside it), all three listed in
the signed checksum file; `release verify --bundle` checks a bundle offline and refuses
(exit 4, naming the file and the reason) every tampering: removed, altered, truncated or
swapped SBOM and provenance, an unlisted signer, a signature over another checksum file,
an SBOM that lists a wheel the bundle lacks or lacks one it has."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from release import provenance, sbom

from ..support import Repo, copy_bundle, keypair, make_project, run_release, write_config

pytestmark = pytest.mark.slow


def app(path: Path) -> Repo:
    repo = make_project(path)
    text = (repo.path / "pyproject.toml").read_text()
    repo.write("pyproject.toml", text.replace('requires-python = ">=3.9"\n', 'requires-python = ">=3.9"\ndependencies = ["packaging>=23", "markupsafe>=2"]\n'))
    repo.commit("dependencies")
    return repo


def signers(folder: Path, key: Path, principal: str = "release@example") -> Path:
    out = folder / f"allowed_signers-{key.name}"
    out.write_text(f"{principal} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One signed bundle with an environment, and a second of another commit (for swaps)."""
    base = tmp_path_factory.mktemp("supply")
    repo = app(base / "app")
    key = keypair(base, "builder")
    cfg = write_config(base / "release.toml", repo.path, bundle={"artifacts": ["wheel"]}, environment={})
    env = {"GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "acme/app", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "1"}
    cp = run_release("--config", cfg, "--json", "bundle", "--sign", str(key), env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    first = json.loads(cp.stdout)
    again = run_release("--config", cfg, "--json", "bundle")  # the same commit, built again
    assert again.returncode == 0, again.stderr[-2000:]
    repo.write("demo_app/core.py", "def answer():\n    return 43\n")
    other_sha = repo.commit("another commit")
    cp = run_release("--config", cfg, "--json", "bundle", "--sign", str(key))
    assert cp.returncode == 0, cp.stderr[-2000:]
    yield {"cfg": cfg, "key": key, "first": first, "again": json.loads(again.stdout), "other": json.loads(cp.stdout), "other_sha": other_sha, "base": base}


def verify(bundle: Path, allowed: Path | None) -> subprocess.CompletedProcess[str]:
    extra = ["--allowed-signers", str(allowed)] if allowed else []
    return run_release("verify", "--bundle", str(bundle), *extra, cwd=bundle.parent)


def test_the_sbom_lists_every_wheel_and_the_provenance_names_the_bundle(built: dict[str, Any]) -> None:
    first = built["first"]
    bundle = Path(first["bundle"])
    text = Path(first["sbom"]).read_text()
    assert sbom.validate(text) == "", "a valid CycloneDX 1.6 document (its JSON schema)"
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["component"]["name"] == "demo-app"
    names = {c["name"]: c for c in doc["components"]}
    assert set(names) == {"packaging", "markupsafe"}
    assert names["markupsafe"]["purl"].startswith("pkg:pypi/markupsafe@") and names["markupsafe"]["licenses"], "the licence its metadata states"
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert sorted(deps["app:demo-app@0.6.0"]) == sorted(c["bom-ref"] for c in names.values())
    manifest_packages = {p["path"]: p["sha256"] for p in json.loads(_member(bundle, "BUNDLE-MANIFEST.json"))["environment"]["packages"]}
    assert sbom.wheels_of(doc) == manifest_packages, "every wheel of the environment, the application's own included, with its sha256"
    assert Path(built["again"]["sbom"]).read_text() == text, "two builds of one commit: the same SBOM, byte for byte"
    facts = provenance.read(Path(first["provenance"]).read_bytes())
    assert facts["subject"] == bundle.name and facts["subject_sha256"] == first["sha256"]
    assert facts["commit"] == first["head"] and facts["wheels"] == manifest_packages
    assert facts["run"] == "https://github.example/acme/app/actions/runs/42/attempts/1" and facts["builder_version"]["release-pipeline"]
    sums = Path(first["sha256_file"]).read_text().splitlines()
    assert [line.split()[1] for line in sums] == [bundle.name, bundle.name + ".cdx.json", bundle.name + ".intoto.json"]


def _member(bundle: Path, rel: str) -> bytes:
    import tarfile

    with tarfile.open(bundle) as tf:
        for m in tf:
            if m.name.split("/", 1)[-1] == rel:
                f = tf.extractfile(m)
                assert f is not None
                return f.read()
    raise AssertionError(rel)


def test_verify_bundle_passes_a_signed_bundle(built: dict[str, Any], tmp_path: Path) -> None:
    bundle = copy_bundle(built["first"], tmp_path)
    cp = verify(bundle, signers(tmp_path, built["key"]))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "signed by:  release@example" in cp.stdout and "every check passed" in cp.stdout
    assert "in https://github.example/acme/app/actions/runs/42" in cp.stdout
    as_json = run_release("--json", "verify", "--bundle", str(bundle), cwd=tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["problems"] == []
    with_cfg = run_release("--config", built["cfg"], "verify", "--bundle", str(bundle))
    assert with_cfg.returncode == 4 and "the config's recorded head is" in with_cfg.stdout, "the config's HEAD moved on: another commit"


def _sbom_dropping(text: str, name: str) -> bytes:
    doc = json.loads(text)
    doc["components"] = [c for c in doc["components"] if c["name"] != name]
    doc["dependencies"] = [d for d in doc["dependencies"] if name not in d["ref"]]
    for d in doc["dependencies"]:
        d["dependsOn"] = [r for r in d.get("dependsOn", []) if name not in r]
    return (json.dumps(doc, indent=1) + "\n").encode()


def _resign(bundle: Path, key: Path, changed: dict[str, bytes]) -> None:
    """An attacker who holds a signing key rewrites files beside the bundle, the checksum
    file to match, and signs it again."""
    import hashlib

    for name, data in changed.items():
        (bundle.parent / name).write_bytes(data)
    sums = bundle.with_name(bundle.name + ".sha256")
    lines = []
    for line in sums.read_text().splitlines():
        digest, name = line.split("  ", 1)
        lines.append(f"{hashlib.sha256((bundle.parent / name).read_bytes()).hexdigest()}  {name}")
    sums.write_text("\n".join(lines) + "\n")
    sums.with_name(sums.name + ".sig").unlink()
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "release-bundle", str(sums)], check=True)


@pytest.mark.parametrize(
    "attack",
    [
        "sbom removed",
        "sbom altered",
        "provenance truncated",
        "provenance of another bundle",
        "unlisted signer",
        "signature over another checksum file",
        "sbom lacks a wheel (re-signed)",
        "sbom lists a wheel the bundle lacks (re-signed)",
        "provenance of another commit (re-signed)",
    ],
)
def test_verify_bundle_refuses_every_tampering(built: dict[str, Any], tmp_path: Path, attack: str) -> None:
    bundle = copy_bundle(built["first"], tmp_path / "b")
    other = copy_bundle(built["other"], tmp_path / "o")
    allowed = signers(tmp_path, built["key"])
    key = built["key"]
    sbom_file = bundle.with_name(bundle.name + ".cdx.json")
    prov_file = bundle.with_name(bundle.name + ".intoto.json")
    if attack == "sbom removed":
        sbom_file.unlink()
        why = f"{sbom_file} is missing"
    elif attack == "sbom altered":
        sbom_file.write_text(sbom_file.read_text().replace("markupsafe", "markupsaf3", 1))
        why = f"{sbom_file.name}: its sha256 is not the one"
    elif attack == "provenance truncated":
        prov_file.write_bytes(prov_file.read_bytes()[:200])
        why = f"{prov_file.name}: its sha256 is not the one"
    elif attack == "provenance of another bundle":
        shutil.copy2(other.with_name(other.name + ".intoto.json"), prov_file)
        why = f"{prov_file.name}: its sha256 is not the one"
    elif attack == "unlisted signer":
        stranger = keypair(tmp_path, "stranger")
        _resign(bundle, stranger, {})
        why = "is not by any key in"
    elif attack == "signature over another checksum file":
        shutil.copy2(other.with_name(other.name + ".sha256.sig"), bundle.with_name(bundle.name + ".sha256.sig"))
        why = "bad signature on"
    elif attack == "sbom lacks a wheel (re-signed)":
        _resign(bundle, key, {sbom_file.name: _sbom_dropping(sbom_file.read_text(), "packaging")})
        why = "which " + sbom_file.name + " does not list"
    elif attack == "sbom lists a wheel the bundle lacks (re-signed)":
        doc = json.loads(sbom_file.read_text())
        extra = json.loads(json.dumps(doc["components"][0]))
        extra["name"], extra["bom-ref"] = "evil", "pkg:pypi/evil@1.0"
        extra["purl"] = "pkg:pypi/evil@1.0"
        extra["properties"] = [{"name": "release:path", "value": "release-env/wheels/evil-1.0-py3-none-any.whl"}]
        doc["components"].append(extra)
        doc["dependencies"].append({"ref": "pkg:pypi/evil@1.0"})
        _resign(bundle, key, {sbom_file.name: (json.dumps(doc, indent=1) + "\n").encode()})
        why = "lists release-env/wheels/evil-1.0-py3-none-any.whl, which the bundle does not carry"
    else:
        text = prov_file.read_text().replace(built["first"]["head"], built["other_sha"])
        _resign(bundle, key, {prov_file.name: text.encode()})
        why = f"names commit {built['other_sha'][:12]}"
    cp = verify(bundle, allowed)
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert why in cp.stdout + cp.stderr, cp.stdout + cp.stderr


def test_plan_shows_the_provenance_it_will_ship(built: dict[str, Any]) -> None:
    repo = Path(str(built["other"]["bundle"])).parent.parent / "app"
    cfg = write_config(built["base"] / "plan.toml", repo, bundle={"artifacts": ["wheel"]}, environment={}, checks=[{"kind": "import", "modules": ["demo_app"]}])
    cp = run_release("--config", cfg, "plan")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    text = (built["base"] / ".release" / "DEPLOY-PLAN.md").read_text()
    assert "## Provenance it will ship" in text and f"commit:        {built['other_sha']}" in text
    assert "builder:       urn:release-pipeline:builder release-pipeline" in text and ".intoto.json" in text
