#!/usr/bin/env python3
"""Build the Ansible collection ``release.pipeline``.

    python scripts/build_collection.py [DEST]      (nox -s collection: DEST = dist/collection)

Copies ``ansible/ansible_collections/release/pipeline`` into ``DEST/ansible_collections/...``,
adds the agent (``release/agent/*.py``, byte for byte) as its ``plugins/module_utils/agent``
(generated, never kept by hand: a test compares them), writes the tool's version into
``galaxy.yml``, and runs ``ansible-galaxy collection build`` into ``DEST`` (the versioned
tarball). ``DEST/ansible_collections`` is usable as ``ANSIBLE_COLLECTIONS_PATH`` as it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "ansible" / "ansible_collections" / "release" / "pipeline"
AGENT = ROOT / "release" / "agent"


def version() -> str:
    text = (ROOT / "release" / "__init__.py").read_text()
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not m:
        raise SystemExit("release/__init__.py names no __version__")
    return m.group(1)


def assemble(dest: Path) -> Path:
    """The collection's tree under ``dest/ansible_collections/release/pipeline`` (made anew)."""
    out = dest / "ansible_collections" / "release" / "pipeline"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(SOURCE, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    agent = out / "plugins" / "module_utils" / "agent"
    agent.mkdir(parents=True)
    for p in sorted(AGENT.glob("*.py")):
        shutil.copy2(p, agent / p.name)
    galaxy = out / "galaxy.yml"
    galaxy.write_text(re.sub(r"(?m)^version: .*$", f"version: {version()}", galaxy.read_text()))
    return out


def build(dest: Path) -> Path:
    """Assemble, then ``ansible-galaxy collection build``: the tarball's path."""
    out = assemble(dest)
    galaxy = shutil.which("ansible-galaxy") or str(Path(sys.executable).parent / "ansible-galaxy")
    subprocess.run([galaxy, "collection", "build", "--force", "--output-path", str(dest), str(out)], check=True, capture_output=True, text=True)
    return dest / f"release-pipeline-{version()}.tar.gz"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist" / "collection"
    print(build(target))
