"""Stage ``plan`` (G1, G2): placeholder until the locked-plan issue lands."""

from __future__ import annotations

from .config import Config
from .deploy import DeployPlan


def check_lock(cfg: Config, plan: DeployPlan, *, no_plan: bool) -> None:
    """No plan lock yet: deploy runs as if --no-plan was given."""
    return None
