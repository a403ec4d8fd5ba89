"""Where a cluster's dashboard is on the gateway's proxy: a path only the hub's services can name.

The gateway's proxy listens where every user instance reaches it, and it asks nobody who they are
on a dashboard's path. So the path is not the cluster's name (which its owner shares, in notebook
outputs and links) but a keyed digest of it: the gateway and the dashboards service hold the key,
users do not.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_VARIABLE = "EC2HUB_DASHBOARD_ROUTE_KEY"


def dashboard_path(key: str, cluster_name: str) -> str:
    digest = hmac.new(key.encode(), cluster_name.encode(), hashlib.sha256).hexdigest()
    return f"/dashboards/{digest}"
