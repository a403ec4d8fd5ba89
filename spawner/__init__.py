"""EC2Spawner: one EC2 instance per JupyterHub user server."""

from spawner.spawner import EC2Spawner

__all__ = ["EC2Spawner"]
