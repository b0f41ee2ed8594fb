"""What the collection's modules share on the host."""

from __future__ import annotations

from typing import Any


def require_request(module: Any) -> None:
    """An action-backed module runs only with the request its action plugin built."""
    if not module.params.get("request"):
        module.fail_json(msg=f"{module._name} runs through its action plugin, which builds its request from `config` on the controller")
