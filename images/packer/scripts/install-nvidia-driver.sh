#!/bin/bash
# GPU image: Ubuntu's headless NVIDIA server driver (no X), then a reboot to load its kernel module.
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update -q
apt-get install -y -q --no-install-recommends \
  "nvidia-headless-${NVIDIA_DRIVER_BRANCH}-server" \
  "nvidia-utils-${NVIDIA_DRIVER_BRANCH}-server" \
  "linux-modules-nvidia-${NVIDIA_DRIVER_BRANCH}-server-aws"
# Keeps the GPUs initialised between CUDA programs (faster first kernel in each notebook).
systemctl enable nvidia-persistenced || true
reboot
