"""IAM policy documents kept once: Terraform and the local cloud render the same files."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

POLICY_DIR = Path(__file__).resolve().parent


def render_policy(name: str, **values: str) -> str:
    """The policy document `name`.json with its ${placeholders} filled (Terraform's templatefile syntax)."""
    text = Template((POLICY_DIR / f"{name}.json").read_text()).substitute(values)
    return json.dumps(json.loads(text), separators=(",", ":"))
