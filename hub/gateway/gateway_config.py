# dask-gateway-server's configuration, as the hub runs it (hub/gateway/__init__.py): every value
# comes from the service's environment, which the hub's settings made.
import json
import os

spec = json.loads(os.environ["EC2HUB_GATEWAY_SPEC"])
c = get_config()  # noqa: F821 (dask-gateway-server provides it)

c.DaskGateway.address = spec["api_listen"]
c.DaskGateway.backend_class = "hub.gateway.backend.EC2Backend"
# People and user servers sign in with their JupyterHub tokens; the service's access scope decides.
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.Proxy.address = spec["http_listen"]
c.Proxy.tcp_address = spec["tcp_listen"]
c.Proxy.prefix = "/services/dask-gateway"

c.EC2Backend.api_url = spec["api_url"]
c.EC2Backend.db_url = spec["db_url"]
# A restarted hub restarts the gateway: its clusters keep running and are picked up again.
c.EC2Backend.stop_clusters_on_shutdown = False
c.EC2Backend.launch_settings = spec["launch"]
c.EC2Backend.profiles = spec["profiles"]
c.EC2Backend.default_limits = spec["limits"]
c.EC2Backend.group_limits = spec["group_limits"]
c.EC2Backend.watch_period = spec["watch_period"]
c.EC2Backend.idle_timeout_min = spec["idle_timeout_min"]
c.EC2Backend.cluster_status_period = spec["status_period"]
c.EC2Backend.budgets = spec["budgets"]
c.EC2Backend.costs_db_url = spec["costs_db_url"]
c.EC2Backend.worker_status_period = spec["status_period"]
