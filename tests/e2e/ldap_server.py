"""A real OpenLDAP server (Debian's slapd) for the tests: own config, own database, own loopback port."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import secrets
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException

from tests.e2e.stack import listen_port, wait_for
from tests.missing import missing

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def require_slapd() -> None:
    """Fail (see tests/missing.py), naming the fix, where Debian's slapd is not installed."""
    if not (SLAPD.exists() and SLAPADD.exists() and (MODULE_DIR / "back_mdb.so").exists()):
        missing("slapd is not installed: run `make system-packages-test` (Debian packages slapd, ldap-utils)")


def die_with_parent() -> None:
    """In the child before exec: if the test run itself is killed, slapd goes too (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def ssha(password: str) -> str:
    """The {SSHA} form slapd stores, so that the test directory holds no clear-text password."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - the LDAP scheme, not our choice
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def directory_ldif(
    users: Mapping[str, str],
    groups: Mapping[str, Sequence[str]],
    posix_groups: Mapping[str, Sequence[str]],
) -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
    ]
    for number, (uid, password) in enumerate(users.items(), start=10001):
        entries.append(
            f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {uid}\ncn: {uid.title()}\nsn: {uid.title()}\nuidNumber: {number}\ngidNumber: {number}\n"
            f"homeDirectory: /home/{uid}\nuserPassword: {ssha(password)}"
        )
    for name, members in groups.items():
        lines = "".join(f"\nmember: {user_dn(uid)}" for uid in members)
        entries.append(f"dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}{lines}")
    for number, (name, members) in enumerate(posix_groups.items(), start=20001):
        lines = "".join(f"\nmemberUid: {uid}" for uid in members)
        entries.append(
            f"dn: cn={name},{GROUPS}\nobjectClass: posixGroup\ncn: {name}\ngidNumber: {number}{lines}"
        )
    return "\n\n".join(entries) + "\n"


def self_signed_certificate(root: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by Debian's openssl (no CA needed)."""
    cert, key = root / "server.crt", root / "server.key"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, f"openssl failed:\n{made.stderr}"
    return cert, key


def slapd_conf(root: Path, admin_password: str, certificate: tuple[Path, Path] | None) -> str:
    schemas = "".join(
        f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "nis", "inetorgperson")
    )
    return (
        f"{schemas}"
        f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n"
        f"pidfile {root / 'slapd.pid'}\n"
        "database mdb\nmaxsize 16777216\n"
        f'suffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\nrootpw {ssha(admin_password)}\n'
        f"directory {root / 'db'}\n"
        + (
            f"TLSCertificateFile {certificate[0]}\nTLSCertificateKeyFile {certificate[1]}\n"
            if certificate
            else ""
        )
        +
        # As a typical directory: passwords only to bind with, everything else readable by anyone.
        "access to attrs=userPassword by anonymous auth by * none\n"
        "access to * by * read\n"
    )


class Slapd:
    """slapd in the foreground on 127.0.0.1:`port`, with its config and database under `root`.

    `users` maps uid to password (under ou=people); `groups` are groupOfNames and `posix_groups`
    posixGroup entries (under ou=groups), each mapping a cn to the uids of its members. With
    `tls`, slapd offers StartTLS with a self-signed certificate, `certificate_file`.
    """

    def __init__(
        self,
        root: Path,
        users: Mapping[str, str],
        groups: Mapping[str, Sequence[str]] | None = None,
        posix_groups: Mapping[str, Sequence[str]] | None = None,
        tls: bool = False,
    ) -> None:
        self.root = root
        self.port = listen_port()
        self.admin_password = secrets.token_urlsafe(16)  # of ADMIN_DN, slapd's root account
        self.process: subprocess.Popen | None = None
        self.log_path = root / "slapd.log"
        root.mkdir(parents=True, exist_ok=True)
        (root / "db").mkdir()
        self.conf = root / "slapd.conf"
        certificate = self_signed_certificate(root) if tls else None
        self.certificate_file = certificate[0] if certificate else None
        self.conf.write_text(slapd_conf(root, self.admin_password, certificate))
        ldif = root / "directory.ldif"
        ldif.write_text(directory_ldif(users, groups or {}, posix_groups or {}))
        loaded = subprocess.run(
            [str(SLAPADD), "-f", str(self.conf), "-l", str(ldif)], capture_output=True, text=True, timeout=60
        )
        assert loaded.returncode == 0, f"slapadd failed:\n{loaded.stderr}"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        """True when slapd serves the directory (not merely accepts connections)."""
        server = ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE, connect_timeout=1)
        try:
            with ldap3.Connection(server, auto_bind=True, receive_timeout=2) as conn:
                return conn.search(SUFFIX, "(objectClass=*)", ldap3.BASE)
        except LDAPException:
            return False

    def start(self) -> None:
        assert self.process is None, "slapd is already running"
        with self.log_path.open("a") as log:
            # -d makes slapd stay in the foreground (our child, killed with us); level 0 logs little.
            self.process = subprocess.Popen(
                [str(SLAPD), "-d", "0", "-f", str(self.conf), "-h", f"{self.url}/"],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

        def ready() -> bool:
            if self.process.poll() is not None:
                log = self.log_path.read_text()[-2000:]
                raise AssertionError(f"slapd exited with status {self.process.returncode}:\n{log}")
            return self.answers()

        try:
            wait_for(ready, START_TIMEOUT, f"slapd on {self.url}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
