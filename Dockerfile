# The hub image: JupyterHub, configurable-http-proxy and ec2hub (hub/, spawner/), configured by the
# repository's jupyterhub_config.py from EC2HUB_* variables (Terraform's hub module writes them).
#   docker build -t ec2hub .
# Node 20 for the proxy; Debian bookworm's own Python is 3.11, the version ec2hub supports.
FROM node:20-bookworm-slim

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian's packages follow the security updates of the base image's release; pinning their exact
# versions would break the build at each of those updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/*

# The proxy and the Costs page's charts (Chart.js), at the versions package-lock.json pins.
WORKDIR /opt/ec2hub
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error && npm cache clean --force

# ec2hub with the pinned versions of pyproject.toml (jupyterhub, authenticators, boto3).
ENV VIRTUAL_ENV=/opt/ec2hub/venv
ENV PATH=/opt/ec2hub/venv/bin:/opt/ec2hub/node_modules/.bin:$PATH
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY spawner ./spawner
COPY localcloud ./localcloud
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir --upgrade pip==25.3 \
    && pip install --no-cache-dir .
COPY jupyterhub_config.py ./

# The hub runs as an unprivileged user (uid 1000, the owner of the database volume on the hub
# instance); its state (database, cookie secret, generated admin password) lives in /srv/ec2hub.
RUN userdel --remove node \
    && useradd --create-home --uid 1000 --user-group ec2hub \
    && install -d -o ec2hub -g ec2hub /srv/ec2hub
USER 1000:1000
WORKDIR /srv/ec2hub
ENV EC2HUB_STATE_DIR=/srv/ec2hub \
    EC2HUB_BIND_IP=0.0.0.0 \
    EC2HUB_PORT=8000 \
    EC2HUB_HUB_PORT=8081 \
    EC2HUB_NODE_MODULES=/opt/ec2hub/node_modules

# 8000: the proxy (the load balancer's target); 8081: the hub's API (user servers call back to it).
EXPOSE 8000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:${EC2HUB_PORT}/hub/health > /dev/null"]

# tini reaps the proxy and forwards signals, so `docker stop` shuts the hub down cleanly.
ENTRYPOINT ["tini", "--"]
CMD ["jupyterhub", "-f", "/opt/ec2hub/jupyterhub_config.py"]
