"""The hub of jupyterhub_config.py with JupyterHub's own local-process spawner: bench/spawn.py's baseline.

Same hub, same proxy, same single-user server (jupyterhub-singleuser from the same venv), started as a
local process instead of on an instance, so the difference is what EC2Spawner adds.
"""

import sys
from pathlib import Path

from hub.config import configure
from hub.settings import Settings

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
settings = Settings.from_env()
configure(c, settings)

c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(settings.state_dir / "baseline-homes" / "{username}")
c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
c.Spawner.options_form = ""
# The instances' bootstrap passes --allow-root when there is no unprivileged user; the same here.
c.Spawner.args = ["--allow-root"]
# The same patience as EC2Spawner's (JupyterHub's defaults, 60 s and 30 s, end servers that share two
# cores with 49 others before they answer).
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 300
