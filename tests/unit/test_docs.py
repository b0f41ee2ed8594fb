"""The documentation cannot drift from the code: the generated pages (configuration
reference, troubleshooting) are what the code gives, every configuration key has its text,
and every link between the pages (and from the README) leads somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from release import config, configdocs, service

pytestmark = pytest.mark.unit
HERE = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_generated_pages_are_what_the_code_gives() -> None:
    cp = subprocess.run([sys.executable, str(HERE / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr


def test_every_configuration_key_has_its_text_and_every_text_a_key() -> None:
    assert set(configdocs.TOP) == set(config.TOP)
    assert {s: set(k) for s, k in configdocs.SECTIONS.items()} == {s: set(k) for s, k in config.SECTIONS.items()}
    assert set(configdocs.CHECKS[""]) == set(config.COMMON_CHECK_KEYS)
    assert {s: set(k) for s, k in configdocs.CHECKS.items() if s} == {s: set(k) for s, k in config.CHECK_KEYS.items()}
    assert set(configdocs.HEALTH[""]) == set(service.HEALTH_COMMON)
    assert {s: set(k) for s, k in configdocs.HEALTH.items() if s} == {s: set(k) for s, k in service.HEALTH_KEYS.items()}
    reference = (HERE / "docs" / "configuration.md").read_text()
    for section, spec in config.SECTIONS.items():
        for key in spec:
            assert f"`[{section}]`" in reference and f"| `{key}` |" in reference, (section, key)


def _slug(text: str) -> str:
    """Python-Markdown's toc slug (what MkDocs makes a heading's anchor)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#").strip()) for line in page.read_text().splitlines() if line.startswith("#")}


def test_every_link_between_the_pages_leads_somewhere() -> None:
    pages = [HERE / "README.md", *sorted((HERE / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (HERE / "mkdocs.yml").read_text()
    assert {p.name for p in (HERE / "docs").glob("*.md")} == set(re.findall(r":\s*([\w.-]+\.md)\s*$", nav, re.MULTILINE))


def test_every_test_file_the_pages_name_exists() -> None:
    """The safety and security pages name the test that attacks each promise: it exists."""
    named = {m for page in (HERE / "docs").glob("*.md") for m in re.findall(r"`(tests/[\w/]+\.py)", page.read_text())}
    assert named and not [n for n in sorted(named) if not (HERE / n).is_file()]
