"""JSON for the agent: read and written by the json package's own C core (``_json``, the
scanner and encoder that ``json.loads`` and ``json.dumps`` run), without importing the
package itself, whose ``json.decoder`` imports ``re`` and, through it, ``enum``: 8 - 10 ms
of every agent start, on every host. Where the C core is missing or differs (not CPython),
the json package. Stricter than ``json.loads`` in two ways: bytes must be UTF-8, and NaN
and the infinities are refused; and every malformed document, one nested too deeply
included, is a ``ValueError`` (``json.loads`` raises ``RecursionError`` for that)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"  # JSON's own, as json.decoder's WHITESPACE


class _Reading:
    """What the C scanner takes from a ``json.JSONDecoder``: its defaults."""

    strict = True  # no control character inside a string
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")


def _not_json(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_scan: Callable[[str, int], tuple[Any, int]] | None
_encode: Callable[[Any, int], Any] | None
try:
    import _json

    _scan = _json.make_scanner(_Reading())  # type: ignore[arg-type]  # duck-typed, as the C core reads it
    _encode = _json.make_encoder(None, _not_json, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False)
    _encode({"probe": [1, 2.5, "x", None, True]}, 0)
except Exception:  # not CPython's _json, or another signature: the package itself
    _scan = _encode = None


def loads(data: str | bytes) -> Any:
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    try:
        if _scan is None:
            import json

            return json.loads(text, parse_constant=_Reading.parse_constant)
        start = len(text) - len(text.lstrip(_WHITESPACE))
        obj, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except SystemError:  # the C scanner, driven without the json package, on an unterminated string
        raise ValueError("Unterminated string") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return obj


MAX_DEPTH = 64  # of an answer or a record read by ``loads_bounded``


def loads_bounded(data: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """``loads`` of untrusted JSON with bounds: at most ``max_bytes`` bytes and ``max_depth``
    levels of nesting (checked without recursion), else ``ValueError``. The parser's own
    limit (a RecursionError past about 1,000 levels) becomes a ValueError in ``loads``."""
    if len(data) > max_bytes:
        raise ValueError(f"{len(data)} bytes (limit {max_bytes})")
    obj = loads(data)
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"nested more than {max_depth} levels deep")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return obj


def dumps(obj: Any) -> str:
    if _encode is None:
        import json

        return json.dumps(obj, allow_nan=False)
    return "".join(_encode(obj, 0))
