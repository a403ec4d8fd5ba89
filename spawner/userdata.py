"""Renders the user-data script that boots a user server on the ec2hub image."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

# EC2 refuses user-data above 16 KiB (before base64).
USER_DATA_LIMIT = 16 * 1024

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def render_user_data(env: Mapping[str, str]) -> str:
    """A shell script that exports `env` and hands over to the image's bootstrap.

    The image runs user-data at every boot (see images/), so a stopped instance that is
    started again boots with the settings written just before its start.
    """
    lines = [
        "#!/bin/sh",
        "# ec2hub user server: settings for this boot, then the image's bootstrap.",
    ]
    for name in sorted(env):
        if not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(env[name]))}")
    lines.append("exec ec2hub-bootstrap")
    script = "\n".join(lines) + "\n"
    if len(script.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user-data is {len(script.encode())} bytes; EC2 allows {USER_DATA_LIMIT}")
    return script
