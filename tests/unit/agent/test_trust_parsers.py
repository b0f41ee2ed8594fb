"""The target's readers of untrusted supply-chain files (`agent/trust.py`), fed what an
attacker writes: any JSON value, hostile checksum lines. Each answers with its result or a
ValueError / refusal naming the problem, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.agent.trust import compare_wheels, parse_sums, provenance_facts, sbom_wheels

pytestmark = pytest.mark.unit

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
KEYS = ["_type", "predicateType", "subject", "predicate", "buildDefinition", "externalParameters", "resolvedDependencies", "runDetails", "digest", "name"]
SHAPED = st.recursive(
    st.none() | st.text(max_size=10) | st.integers(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, SHAPED))
def test_provenance_facts_never_crashes_on_any_json(doc: object) -> None:
    try:
        facts = provenance_facts(doc)
    except ValueError:
        return
    assert isinstance(facts["wheels"], dict) and isinstance(facts["subject"], str)


def test_a_statement_of_the_right_shape_is_read() -> None:
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": "b.tar.gz", "digest": {"sha256": "a" * 64}}],
        "predicate": {
            "buildDefinition": {"externalParameters": {"commit": "c" * 40}, "resolvedDependencies": [{"name": "w.whl", "digest": {"sha256": "d" * 64}}]}
        },
    }
    facts = provenance_facts(doc)
    assert facts["subject"] == "b.tar.gz" and facts["commit"] == "c" * 40 and facts["wheels"] == {"w.whl": "d" * 64}
    for broken in ({**doc, "subject": []}, {**doc, "predicateType": "x"}, {**doc, "predicate": []}, {**doc, "_type": None}):
        with pytest.raises(ValueError):
            provenance_facts(broken)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.dictionaries(st.sampled_from(["components", "metadata", "properties", "hashes"]), JSON, max_size=3)))
def test_sbom_wheels_never_crashes_on_any_json_object(doc: object) -> None:
    if not isinstance(doc, dict):
        doc = {"components": doc}
    try:
        out = sbom_wheels(doc)
    except (TypeError, AttributeError) as exc:  # a list where an object was expected is a bug to see
        raise AssertionError(f"{type(exc).__name__}: {exc} on {json.dumps(doc)[:200]}") from None
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


@pytest.mark.parametrize(
    "text",
    [
        "x" * 64 + "  a.tar.gz\n",  # not hex
        "a" * 63 + "  a.tar.gz\n",  # short
        "a" * 64 + "  ../etc/passwd\n",  # a path
        "a" * 64 + "  a.tar.gz\n" + "b" * 64 + "  a.tar.gz\n",  # repeated
        "\n".join("a" * 64 + f"  f{i}" for i in range(17)),  # too many lines
        "a" * 64 + "\ta.tar.gz\n",
    ],
)
def test_hostile_checksum_lines_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sums(text.encode())


def test_checksum_lines_and_wheel_comparison() -> None:
    assert parse_sums(("a" * 64 + "  b.tar.gz\n" + "c" * 64 + " *b.tar.gz.cdx.json\n").encode()) == {"b.tar.gz": "a" * 64, "b.tar.gz.cdx.json": "c" * 64}
    problems = compare_wheels("sbom", {"x.whl": "1", "y.whl": "2"}, {"y.whl": "3", "z.whl": "4"})
    assert problems == [
        "sbom lists x.whl, which the bundle does not carry",
        "the bundle carries z.whl, which sbom does not list",
        "sbom gives y.whl another sha256 than the bundle's",
    ]
