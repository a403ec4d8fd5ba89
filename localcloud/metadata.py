"""A per-instance metadata service (IMDSv2) on the instance's own private IP."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import struct
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.backends import get_backend
from moto.core.types import Base64EncodedString

MAX_TOKEN_TTL = 21600
# Role credentials are handed out again this long before they expire, like EC2 does.
CREDENTIAL_REFRESH = timedelta(minutes=15)
CREDENTIAL_DURATION = 3600


def decode_user_data(user_data) -> bytes:
    """The raw bytes of an instance's user-data, however moto holds it."""
    if not user_data:
        return b""
    if isinstance(user_data, list):
        user_data = user_data[0] if user_data else ""
    if isinstance(user_data, Base64EncodedString):
        return base64.b64decode(user_data.as_bytes())
    if isinstance(user_data, bytes):
        return user_data
    try:
        return base64.b64decode(str(user_data), validate=True)
    except ValueError:
        return str(user_data).encode()


def _tcp_address(ip: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address's 32 bits in host order, the port."""
    return f"{struct.unpack('=I', socket.inet_aton(ip))[0]:08X}:{port:04X}"


def peer_uid(client: tuple[str, int], server: tuple[str, int], table: str = "/proc/net/tcp") -> int | None:
    """The uid that owns the client end of a local TCP connection, or None when none is found."""
    local, remote = _tcp_address(*client), _tcp_address(*server)
    with open(table) as f:
        next(f)  # the header
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[7])
    return None


class MetadataServer:
    """Answers an instance's metadata requests: identity, placement, user-data, role credentials.

    With `allowed_uids`, only connections from processes of those uids get an answer: on EC2 no
    other machine reaches an instance's metadata service, here every instance shares loopback.
    """

    def __init__(self, instance, ip: str, port: int, allowed_uids: set[int] | None = None) -> None:
        self.instance = instance
        self.ip = ip
        self.port = port
        self.allowed_uids = frozenset(allowed_uids) if allowed_uids is not None else None
        self._tokens: dict[str, float] = {}
        self._credentials: dict | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}/"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"service": self})
        self._server = ThreadingHTTPServer((self.ip, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"imds-{self.instance.id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answers(self, client: tuple[str, int]) -> bool:
        if self.allowed_uids is None:
            return True
        return peer_uid(client[:2], (self.ip, self.port)) in self.allowed_uids

    # -- tokens ------------------------------------------------------------------------------------

    def new_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    @property
    def tokens_required(self) -> bool:
        return self.instance.metadata_options.http_tokens == "required"

    # -- content -------------------------------------------------------------------------------------

    def _profile(self):
        associations = self.instance.ec2_backend.iam_instance_profile_associations
        association = associations.get(self.instance.id)
        return association.iam_instance_profile if association else None

    def role_name(self) -> str | None:
        profile = self._profile()
        if profile is None or not profile.roles:
            return None
        return profile.roles[0].name

    def role_credentials(self) -> dict:
        """Credentials of the instance profile's role, from STS, as EC2's metadata service gives them."""
        profile = self._profile()
        role = profile.roles[0]
        with self._lock:
            cached = self._credentials
            now = datetime.now(UTC)
            # A profile associated later (a claimed pool instance) has another role: new credentials.
            if cached and cached["_role"] == role.arn and cached["_expires"] - CREDENTIAL_REFRESH > now:
                return cached
            sts = get_backend("sts")[self.instance.ec2_backend.account_id]["global"]
            assumed = sts.assume_role(
                region_name=self.instance.region_name,
                role_session_name=self.instance.id,
                role_arn=role.arn,
                policy=None,
                duration=CREDENTIAL_DURATION,
                external_id=None,
            )
            expires = assumed.expiration.replace(tzinfo=UTC)
            self._credentials = {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": assumed.access_key_id,
                "SecretAccessKey": assumed.secret_access_key,
                "Token": assumed.session_token,
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "_expires": expires,
                "_role": role.arn,
            }
            return self._credentials

    def lookup(self, path: str) -> tuple[int, str]:
        instance = self.instance
        zone = instance.placement.zone
        meta = {
            "instance-id": instance.id,
            "instance-type": instance.instance_type,
            "ami-id": instance.image_id,
            "local-ipv4": instance.private_ip,
            "local-hostname": instance.private_dns_name,
            "hostname": instance.private_dns_name,
            "placement/availability-zone": zone,
            "placement/region": instance.region_name,
        }
        if path == "/latest/user-data":
            data = decode_user_data(instance.user_data)
            return (200, data.decode("utf-8", "replace")) if data else (404, "Not Found")
        if path == "/latest/dynamic/instance-identity/document":
            document = {
                "accountId": instance.ec2_backend.account_id,
                "availabilityZone": zone,
                "imageId": instance.image_id,
                "instanceId": instance.id,
                "instanceType": instance.instance_type,
                "privateIp": instance.private_ip,
                "region": instance.region_name,
            }
            return 200, json.dumps(document, indent=2)
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return 404, "Not Found"
        key = path[len(prefix) :]
        if key in meta:
            return 200, str(meta[key])
        role = self.role_name()
        if key in ("iam/security-credentials", "iam/security-credentials/"):
            return (200, role) if role else (404, "Not Found")
        if role and key == f"iam/security-credentials/{role}":
            credentials = {k: v for k, v in self.role_credentials().items() if not k.startswith("_")}
            return 200, json.dumps(credentials, indent=2)
        if role and key == "iam/info":
            profile = self._profile()
            info = {"Code": "Success", "InstanceProfileArn": profile.arn, "InstanceProfileId": profile.id}
            return 200, json.dumps(info, indent=2)
        if key.startswith("tags/instance"):
            return self._tag_lookup(key[len("tags/instance") :].strip("/"))
        if key == "":
            return 200, "\n".join(sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in meta}))
        return 404, "Not Found"

    def _tag_lookup(self, name: str) -> tuple[int, str]:
        """The instance's tags, as EC2 serves them when the instance allows tags in its metadata."""
        if self.instance.metadata_options.instance_metadata_tags != "enabled":
            return 404, "Not Found"
        tags = {tag["key"]: tag["value"] for tag in self.instance.get_tags()}
        if not name:
            return 200, "\n".join(sorted(tags))
        return (200, tags[name]) if name in tags else (404, "Not Found")


class _Handler(BaseHTTPRequestHandler):
    service: MetadataServer
    server_version = "EC2ws"

    def log_message(self, format, *args):  # noqa: A002 - keep tokens and credentials out of logs
        pass

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802
        if not self.service.answers(self.client_address):
            return self._send(403, "Forbidden")
        if self.path != "/latest/api/token":
            return self._send(404, "Not Found")
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self._send(400, "Bad Request")
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return self._send(400, "Bad Request")
        token = self.service.new_token(ttl)
        self.send_response(200)
        self.send_header("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))
        self.send_header("Content-Length", str(len(token)))
        self.end_headers()
        self.wfile.write(token.encode())

    def do_GET(self) -> None:  # noqa: N802
        if not self.service.answers(self.client_address):
            return self._send(403, "Forbidden")
        token = self.headers.get("X-aws-ec2-metadata-token")
        if token is not None and not self.service.token_valid(token):
            return self._send(401, "Unauthorized")
        if token is None and self.service.tokens_required:
            return self._send(401, "Unauthorized")
        status, body = self.service.lookup(self.path.split("?", 1)[0])
        self._send(status, body)
