"""Runs the local cloud: the AWS endpoint, the provisioned account and the instance runtime."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Snapshots of the AWS state are taken this often while something changed, and at shutdown.
SNAPSHOT_INTERVAL = 15.0


def _settings_for_moto() -> None:
    # Read by moto at import: enforcement from the very first request, and launches checked
    # against registered images and real instance types, as on AWS.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "true"
    os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    # moto's own default images are not the platform's: only the registered one may launch.
    os.environ["MOTO_AMIS_PATH"] = str(Path(__file__).with_name("no-default-amis.json"))


def _default_ami_bin() -> Path:
    """The instances boot the venv's AMI (localcloud/ami.py: users' own packages kept) when built."""
    ami = Path(sys.prefix) / "ami" / "bin"
    return ami if (ami / "python").exists() else Path(sys.executable).parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m localcloud", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env.get("EC2HUB_STATE_DIR") or REPO_ROOT / "state") / "localcloud",
    )
    parser.add_argument("--port", type=int, default=int(env.get("EC2HUB_AWS_PORT") or 4566))
    parser.add_argument("--region", default=env.get("EC2HUB_AWS_REGION") or "us-east-1")
    parser.add_argument(
        "--subnets",
        default=env.get("EC2HUB_LOCAL_SUBNETS") or "127.0.1.0/24,127.0.2.0/24",
        help="user subnets (comma-separated CIDRs inside 127.0.0.0/16), one per availability zone",
    )
    parser.add_argument("--bucket", default=env.get("EC2HUB_BUCKET") or "ec2hub-local")
    parser.add_argument("--hub-id", default=env.get("EC2HUB_HUB_ID") or "ec2hub")
    parser.add_argument("--imds-port", type=int, default=int(env.get("EC2HUB_IMDS_PORT") or 8169))
    parser.add_argument(
        "--faults-port",
        type=int,
        default=int(env.get("EC2HUB_FAULTS_PORT") or 0),
        help="turn on the fault switches' control API on this loopback port (off by default)",
    )
    parser.add_argument(
        "--ami-bin",
        type=Path,
        default=_default_ami_bin(),
        help="bin folder of the user environment the instances boot (the local 'AMI')",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[localcloud %(asctime)s] %(message)s")
    log = logging.getLogger("localcloud")
    _settings_for_moto()

    from localcloud import motofixes
    from localcloud.endpoint import Endpoint
    from localcloud.faults import FaultControl, Faults
    from localcloud.provision import LocalAccount, create_admin, provision
    from localcloud.runtime import InstanceRuntime

    motofixes.apply()
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)  # the account's admin keys, the AWS state, every instance's disk
    faults = Faults()
    endpoint = Endpoint("127.0.0.1", args.port, state_dir, faults)
    restored = endpoint.restore()
    account = LocalAccount(
        region=args.region,
        endpoint_url=endpoint.url,
        subnet_cidrs=tuple(c.strip() for c in args.subnets.split(",") if c.strip()),
        bucket=args.bucket,
        hub_id=args.hub_id,
        state_dir=state_dir,
    )
    create_admin(account)
    runtime = InstanceRuntime(
        state_dir,
        aws_endpoint_url=endpoint.url,
        imds_port=args.imds_port,
        ami_bin=args.ami_bin.resolve(),
        gate=endpoint.gate,
        faults=faults,
    )
    runtime.install()
    endpoint.start()
    try:
        provision(account)
        endpoint.snapshot()
        runtime.start()
    except Exception:
        endpoint.stop()
        raise

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "ready at %s (%s state); credentials in %s",
        endpoint.url,
        "restored" if restored else "new",
        account.credentials_file,
    )
    control = None
    faults_url_file = state_dir / "faults-url"
    faults_url_file.unlink(missing_ok=True)
    if args.faults_port:
        control = FaultControl(args.faults_port, faults, runtime, endpoint.gate)
        control.start()
        faults_url_file.write_text(control.url + "\n")
        log.warning("fault switches are on at %s (loopback only)", control.url)
    (state_dir / "ready").write_text(endpoint.url + "\n")
    while not stop.wait(SNAPSHOT_INTERVAL):
        if endpoint.front.changed.is_set():
            endpoint.snapshot()
    log.info("stopping: instances first (their disks stay), then the endpoint")
    (state_dir / "ready").unlink(missing_ok=True)
    if control is not None:
        control.stop()
        faults_url_file.unlink(missing_ok=True)
    runtime.shutdown()
    endpoint.stop()
    endpoint.snapshot()
    log.info("stopped; state saved in %s", state_dir)
    return 0
