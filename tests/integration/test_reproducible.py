"""``bundle --reproducible-check``, honestly (#22 item 5): it works with an environment, a
setuptools project's sdist and wheel are byte for byte the same twice (the archives are
normalised), and a backend that is not reproducible is named with its artifact and the
first member that differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..support import Cli, make_project, write_config

pytestmark = pytest.mark.slow

NOISY_BACKEND = """
import base64, hashlib, os, tarfile, io, zipfile

NAME, VERSION = "noisy_app", "1.0"


def _record(files):
    lines = []
    for path, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    return "\\n".join(lines + [f"{NAME}-{VERSION}.dist-info/RECORD,,"]) + "\\n"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{NAME}-{VERSION}.dist-info"
    files = [
        (f"{NAME}/__init__.py", b"VERSION = '1.0'\\n"),
        (f"{NAME}/stamp.txt", os.urandom(8).hex().encode()),  # not reproducible, on purpose
        (f"{info}/METADATA", f"Metadata-Version: 2.1\\nName: noisy-app\\nVersion: {VERSION}\\n".encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\\nGenerator: noisy\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"),
    ]
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files:
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", _record(files))
    return name


def build_sdist(sdist_directory, config_settings=None):
    name = f"{NAME}-{VERSION}"
    with tarfile.open(os.path.join(sdist_directory, name + ".tar.gz"), "w:gz") as tf:
        data = b"[build-system]\\nrequires = []\\nbuild-backend = 'noisy_backend'\\nbackend-path = ['.']\\n"
        m = tarfile.TarInfo(f"{name}/pyproject.toml")
        m.size = len(data)
        tf.addfile(m, io.BytesIO(data))
    return name + ".tar.gz"
"""


def test_a_setuptools_project_with_an_environment_is_reproducible(tmp_path: Path, cli: Cli) -> None:
    """The README's own shape (an [environment]) no longer crashes the check, and a
    setuptools sdist and wheel (file times and owners from the disk, gzip's clock) come out
    the same twice: the archives are normalised after the backend wrote them."""
    repo = make_project(tmp_path / "app")
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo-app"\nversion = "0.6.0"\nrequires-python = ">=3.9"\n'
        '[tool.setuptools]\npackages = ["demo_app"]\n',
    )
    repo.commit("setuptools")
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        bundle={"artifacts": ["sdist", "wheel"]},
        environment={"python": "3.11", "platforms": ["manylinux_2_17_x86_64"]},
    )
    r = cli("--config", cfg, "--json", "bundle", "--reproducible-check")
    assert r.code == 0, r.err
    check = r.json["reproducible"]
    assert isinstance(check, dict) and check["identical"] is True and check["artifacts"] == [], check
    assert sorted(r.json["artifacts"]) == ["demo_app-0.6.0-py3-none-any.whl", "demo_app-0.6.0.tar.gz"]  # type: ignore[call-overload]


def test_a_backend_that_is_not_reproducible_is_named_with_its_first_differing_member(tmp_path: Path, cli: Cli) -> None:
    repo = make_project(tmp_path / "noisy")
    repo.write("pyproject.toml", "[build-system]\nrequires = []\nbuild-backend = 'noisy_backend'\nbackend-path = ['.']\n")
    repo.write("noisy_backend.py", NOISY_BACKEND)
    repo.commit("a backend that writes a random member")
    cfg = write_config(tmp_path / "release.toml", repo.path, top={"name": "noisy-app"}, bundle={"artifacts": ["wheel"]})
    r = cli("--config", cfg, "--json", "bundle", "--reproducible-check")
    assert r.code == 1, r.err
    check = r.json["reproducible"]
    assert isinstance(check, dict)
    # the manifest and the SBOM hold the wheel's hash
    assert check["differing"] == ["BUNDLE-MANIFEST.json", "SBOM.cdx.json", "dist/noisy_app-1.0-py3-none-any.whl"]
    assert check["artifacts"] == [
        {"artifact": "dist/noisy_app-1.0-py3-none-any.whl", "backend": "noisy_backend", "first_differing_member": "noisy_app/stamp.txt"}
    ]
    assert "noisy_app/stamp.txt" in r.err and "noisy_backend" in r.err
