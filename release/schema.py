"""The config's schema rule, written once: a table's keys checked against ``key -> (type,
default)`` (a default of ``...`` means required); an unknown key is exit 2 naming the key
meant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

Spec = dict[str, tuple[Any, Any]]


def typo_hint(key: str, known: list[str]) -> str:
    import difflib  # only to name the key that was meant

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known keys: " + ", ".join(sorted(known))


def check_table(table: Mapping[str, Any], spec: Spec, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in table:
        if key not in spec:
            raise ConfigError(
                f"unknown config key '{where}{key}'",
                hint=typo_hint(key, list(spec)),
            )
    for key, (typ, default) in spec.items():
        if key in table:
            value = table[key]
            if typ is not object and not (isinstance(value, typ) and not (typ is int and isinstance(value, bool))):
                raise ConfigError(
                    f"config key '{where}{key}' must be a {typ.__name__}, got {type(value).__name__}",
                    hint=f"fix '{where}{key}' in the config file",
                )
            out[key] = value
        elif default is ...:
            raise ConfigError(f"missing required config key '{where}{key}'", hint=f"add '{key} = ...' to the config")
        else:
            out[key] = default
    return out


def kinded_table(raw: object, where: str, array: str, label: str, common: Spec, kinds: Mapping[str, Spec]) -> tuple[str, dict[str, Any]]:
    """One table of an array of tables told apart by ``kind`` (``[[smoke.check]]``,
    ``[[health.check]]``): its kind, and its keys checked against the common ones and that
    kind's. ``where`` is the table's key prefix (``"smoke.check[0]."``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where[:-1]} must be a table", hint=f"write it as [[{array}]]")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise ConfigError(
            f"{where}kind: unknown {label} kind {kind!r}",
            hint=typo_hint(str(kind), list(kinds)) if kind else "add kind = one of " + ", ".join(kinds),
        )
    return kind, check_table(raw, {**common, **kinds[kind]}, where)
