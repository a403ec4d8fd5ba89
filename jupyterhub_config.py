"""JupyterHub configuration for every environment: all of it comes from EC2HUB_* settings."""

from hub.config import configure
from hub.settings import Settings

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
configure(c, Settings.from_env())
