"""EC2Spawner: one EC2 instance per JupyterHub user server."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EC2Spawner"]


def __getattr__(name: str) -> Any:
    # Loaded on first use (`spawner:EC2Spawner`, the jupyterhub.spawners entry point), so that the
    # package's modules import one another in one direction only.
    if name == "EC2Spawner":
        return importlib.import_module("spawner.spawner").EC2Spawner
    raise AttributeError(f"module 'spawner' has no attribute {name!r}")
