"""The agent's name rules, written without ``re`` and ``shlex`` (their imports cost every
agent start): they must give exactly what the stdlib's own tools give."""

from __future__ import annotations

import os
import re
import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from release.agent import names

# printable and unsafe ASCII, the control characters, backslash, surrogate escapes, non-ASCII
chars = st.sampled_from([*map(chr, range(0x80)), "\udc80", "\udcff", "\udd00", "\ud800", "é", "\u2028", "文"])


@settings(max_examples=400, deadline=None)
@given(target=st.text(chars, max_size=20))
def test_rollback_command_is_what_shlex_join_writes(target: str) -> None:
    command = names.rollback_command(target)
    assert command == shlex.join(["rm", "-rf", "--", target])
    assert shlex.split(command) == ["rm", "-rf", "--", target] or "\x00" in target


@settings(max_examples=400, deadline=None)
@given(rel=st.text(chars, min_size=1, max_size=20))
def test_the_bad_character_rule_is_the_regular_expressions(rel: str) -> None:
    bad = re.search("[\x00-\x1f\x7f\\\\\ud800-\udfff]", rel)  # a surrogate is never UTF-8
    why = names.name_problem(rel)
    if bad is None:
        assert why not in ("not UTF-8", "backslash", "control character")
    else:
        c = bad.group()
        assert why == ("not UTF-8" if "\ud800" <= c <= "\udfff" else ("backslash" if c == "\\" else "control character"))


def test_digests_take_any_name_without_an_exception() -> None:
    """A file name's undecodable bytes hash as the bytes they were; a lone surrogate no file
    name can hold (a JSON escape in a manifest an app rewrote) hashes too, never raises; a
    UTF-8 name hashes as it always did."""
    import hashlib

    from release.agent.names import tree_sha256, utf8
    from release.agent.release_tree import names_sha256

    assert utf8("caf\u00e9") == "caf\u00e9".encode()
    assert utf8(os.fsdecode(b"bad\xff")) == b"bad\xff"
    assert utf8("x\ud800y") == b"x\xed\xa0\x80y"
    assert tree_sha256({"a\ud800": "0" * 64}) != tree_sha256({"a": "0" * 64})
    assert names_sha256({"": [("ok.txt", False)]}) == hashlib.sha256(b"\0f:ok.txt").hexdigest()
    assert names_sha256({"": [(os.fsdecode(b"bad\xff"), False)]}) == hashlib.sha256(b"\0f:bad\xff").hexdigest()
