"""TOML this tool did not write (a project's pyproject.toml, a lock file, the operator's
config), read once with its bounds: a size, UTF-8, and a nesting that the standard
library's recursive parser survives (arrays nested 3,000 deep were a RecursionError
traceback). Each caller turns ``TomlInputError`` into its own exit code."""

from __future__ import annotations

from typing import Any

MAX_PYPROJECT = 4 << 20  # a project's pyproject.toml (real ones are a few KiB)


class TomlInputError(ValueError):
    """Why a TOML text was not read: the words finish "<file> ..."."""


def parse(raw: bytes, limit: int) -> dict[str, Any]:
    import tomllib

    if len(raw) > limit:
        raise TomlInputError(f"is larger than {limit >> 20} MiB")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TomlInputError(f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlInputError(f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlInputError("nests arrays or tables deeper than the TOML parser can follow") from None
