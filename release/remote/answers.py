"""Every answer of a target is held to its declared shape before a stage reads it.

The agent's op table (``agent/ops.py``) names each op's answer, a TypedDict of
``agent/messages.py``; this module checks the answer against it: every required key
present, every key present of its declared type, all the way down (lists, dicts, nested
answers). A host that lies in its answer (``{"ok": true, "result": {}}`` from a
compromised interpreter, or a key of the wrong type) was a KeyError traceback for most
stages, and a deploy recorded as done with no files and no tree: now it is that host's
failure, named, and for an op that changes the target an unknown outcome that the next
run reconciles with the target first. Keys the shape does not name are left alone (the
transport's ``_log``).

The check reads the TypedDicts' own annotations (``__annotations__``, required and
optional keys), so the shapes are written once, in messages.py. Its cost is linear in the
answer, which the transport already bounded in bytes and depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..agent import messages
from ..agent import ops as agent_ops

_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (object,)}


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _annotation(tp: Any) -> str:
    return str(getattr(tp, "__forward_arg__", tp))  # TypedDict keeps a postponed annotation as a ForwardRef


def problem(value: Any, shape: str, where: str = "") -> str:
    """'' when ``value`` conforms to the annotation ``shape``; else where and how it does not."""
    alternatives = _split(shape, "|")
    if len(alternatives) > 1:
        found = [problem(value, alt, where) for alt in alternatives]
        return "" if "" in found else found[0]
    shape = shape.strip()
    if shape == "None":
        return "" if value is None else f"{where or 'the answer'}: {type(value).__name__}, expected null"
    if shape == "Any":
        return ""
    if shape in _SCALARS:
        ok = isinstance(value, _SCALARS[shape]) and (shape == "bool" or not isinstance(value, bool) or shape == "object")
        return "" if ok else f"{where or 'the answer'}: {type(value).__name__}, expected {shape}"
    head, _, inner = shape.partition("[")
    if inner:
        args = _split(inner[:-1], ",")
        if head == "list":
            if not isinstance(value, list):
                return f"{where or 'the answer'}: {type(value).__name__}, expected a list"
            if args[0] == "str":  # the long lists (a tree's paths): one pass, no parse per item
                bad = next((i for i, item in enumerate(value) if not isinstance(item, str)), None)
                return "" if bad is None else f"{where}[{bad}]: {type(value[bad]).__name__}, expected str"
            for i, item in enumerate(value):
                why = problem(item, args[0], f"{where}[{i}]")
                if why:
                    return why
            return ""
        if head == "dict":
            if not isinstance(value, dict):
                return f"{where or 'the answer'}: {type(value).__name__}, expected an object"
            for k, v in value.items():
                why = problem(k, args[0], f"{where}.<key>") or problem(v, args[1], f"{where}.{k}")
                if why:
                    return why
            return ""
        raise ValueError(f"no check for the annotation {shape!r}")
    typed = getattr(messages, shape, None)
    if typed is None or not hasattr(typed, "__required_keys__"):
        raise ValueError(f"no check for the annotation {shape!r}")
    return _typed_problem(value, typed, where)


def _typed_problem(value: Any, typed: Any, where: str) -> str:
    if not isinstance(value, dict):
        return f"{where or 'the answer'}: {type(value).__name__}, expected an object"
    missing = sorted(k for k in typed.__required_keys__ if k not in value)
    if missing:
        return f"{where or 'the answer'} lacks {', '.join(missing[:5])}"
    for key, tp in typed.__annotations__.items():
        if key in value:
            why = problem(value[key], _annotation(tp), f"{where}.{key}" if where else key)
            if why:
                return why
    return ""


def answer_problem(op: str, request: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """'' when ``result`` is the answer ``op`` declares (a ``ship_only`` deploy's is a
    ShippedResult); else what is wrong with it."""
    name = "ShippedResult" if op == "deploy" and request.get("ship_only") else agent_ops.OPS[op].answer
    return problem(result, name)
