"""Failed sign-ins throttled per client address and per account from that address, and one sign-in
form that answers the same way whether a name exists, is locked or was mistyped."""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable

from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from traitlets import Float, Instance, Integer, List, Unicode, default

FAILED_SIGN_INS_PER_ADDRESS = 5
FAILED_SIGN_INS_PER_ACCOUNT = 5
FAILED_SIGN_IN_WINDOW = 600.0

INVALID_CREDENTIALS = "Invalid username or password."

# The proxy in front of the hub (configurable-http-proxy) runs beside it and connects from loopback.
# Only these two addresses: the local cloud gives instances other 127.x.y.z addresses.
LOOPBACK = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})

# Forgotten failures are swept from the tables once they hold this many keys.
SWEEP_AT = 10_000


class SignInThrottle:
    """Failed sign-ins in a sliding window, counted per client address and per (account, address).

    Per address: `per_address` failures within `window` seconds, whatever names were tried, and that
    address waits until the oldest of them is `window` old; a correct password does not get through
    meanwhile, so guessing many names (or one) from one place is slow.

    Per account, but keyed on (account, address) rather than on the account alone: a lock on the
    account alone lets anyone keep anyone out, the admin included, for as long as they care to fail
    five times every ten minutes. Keyed this way, an attacker locks the account only for themselves,
    and its owner, from their own address, signs in as usual. The per-address limit bounds what one
    address can try; the per-account limit still applies when an operator raises the per-address one
    (many people behind one NAT address): each account then locks, from that address, after its own
    `per_account` failures. Guessing from many addresses at once is bounded per address only; the
    password rules (10 characters, not a common password; 16 for the admin) carry the rest.

    A refused attempt while throttled is not counted: it cannot extend the wait. `clock` is injected
    (seconds, monotonic) so tests need no sleeps.
    """

    def __init__(
        self,
        per_address: int = FAILED_SIGN_INS_PER_ADDRESS,
        per_account: int = FAILED_SIGN_INS_PER_ACCOUNT,
        window: float = FAILED_SIGN_IN_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_address = per_address
        self.per_account = per_account
        self.window = window
        self.clock = clock
        self._by_address: dict[str, deque[float]] = {}
        self._by_account: dict[tuple[str, str], deque[float]] = {}

    def wait(self, account: str, address: str) -> float:
        """Seconds before `address` may try to sign in as `account` (0: now)."""
        now = self.clock()
        return max(
            self._wait(self._by_address.get(address), self.per_address, now),
            self._wait(self._by_account.get((account, address)), self.per_account, now),
        )

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for table, key, limit in (
            (self._by_address, address, self.per_address),
            (self._by_account, (account, address), self.per_account),
        ):
            if len(table) >= SWEEP_AT:
                self._sweep(table, now)
            # Only the last `limit` failures decide the wait: the tables never grow past that per key.
            table.setdefault(key, deque(maxlen=max(1, limit))).append(now)

    def succeeded(self, account: str, address: str) -> None:
        """The account's failures from this address are forgiven; the address's count stays."""
        self._by_account.pop((account, address), None)

    def _wait(self, failures: deque[float] | None, limit: int, now: float) -> float:
        if not failures or len(failures) < limit:
            return 0.0
        return max(0.0, failures[-limit] + self.window - now)

    def _sweep(self, table: dict[Hashable, deque[float]], now: float) -> None:
        for key in [key for key, failures in table.items() if failures[-1] + self.window <= now]:
            del table[key]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # Node reports IPv4 clients of a dual-stack socket as ::ffff:a.b.c.d.
    return getattr(ip, "ipv4_mapped", None) or ip


def client_address(peer: str, forwarded_for: str | None, trusted: Iterable[str] = ()) -> str:
    """The address a request came from, as the last proxy we trust saw it.

    `peer` is the address of the TCP connection; each proxy appends the address it was connected
    from to X-Forwarded-For. Reading from the right, an entry is believed only while the one who
    wrote it (the peer, then each entry to its right) is loopback or in `trusted` (networks, e.g. a
    load balancer's subnets). Tornado's `remote_ip` is not used: with `xheaders` it takes an
    X-Real-Ip header as given, and configurable-http-proxy passes a client's X-Real-Ip through, so
    anyone could pick the address their failures are counted against.
    """
    networks = [ipaddress.ip_network(network, strict=False) for network in trusted]

    def is_trusted(address: str) -> bool:
        ip = _ip(address)
        return ip is not None and (ip in LOOPBACK or any(ip in network for network in networks))

    address = peer
    for hop in reversed(forwarded_for.split(",") if forwarded_for else []):
        if not is_trusted(address):
            break
        address = hop.strip()
    ip = _ip(address)
    return str(ip) if ip is not None else address[:64]


class ThrottledSignIn(Authenticator):
    """An authenticator with a sign-in form whose failures are throttled (see SignInThrottle)."""

    failed_sign_ins_per_address = Integer(
        FAILED_SIGN_INS_PER_ADDRESS,
        min=1,
        config=True,
        help="""Failed sign-ins from one client address, whatever the names tried, within
        `failed_sign_in_window` seconds, after which that address waits (default 5). Raise it when
        many people share one address (a NAT): each account still locks from it after
        `failed_sign_ins_per_account`. Example: `c.SignUpAuthenticator.failed_sign_ins_per_address = 20`.""",
    )
    failed_sign_ins_per_account = Integer(
        FAILED_SIGN_INS_PER_ACCOUNT,
        min=1,
        config=True,
        help="""Failed sign-ins to one account from one client address within `failed_sign_in_window`
        seconds, after which that address waits for that account (default 5). Other addresses are not
        affected, so nobody can lock anyone else out.
        Example: `c.SignUpAuthenticator.failed_sign_ins_per_account = 3`.""",
    )
    failed_sign_in_window = Float(
        FAILED_SIGN_IN_WINDOW,
        min=1,
        config=True,
        help="""Seconds over which failed sign-ins are counted (default 600): an address that reached a
        limit tries again once its oldest counted failure is this old.
        Example: `c.SignUpAuthenticator.failed_sign_in_window = 900`.""",
    )
    trusted_proxies = List(
        Unicode(),
        config=True,
        help="""Networks of the proxies in front of the hub (besides configurable-http-proxy on
        loopback), whose X-Forwarded-For entries name the client: behind a load balancer, its subnets.
        Empty (default): the address configurable-http-proxy saw is the client's. Set from
        EC2HUB_TRUSTED_PROXIES. Example: `c.SignUpAuthenticator.trusted_proxies = ["10.0.0.0/24"]`.""",
    )
    sign_in_throttle = Instance(SignInThrottle, help="The failed sign-ins counted so far (in memory).")

    @default("sign_in_throttle")
    def _default_throttle(self) -> SignInThrottle:
        return SignInThrottle(
            self.failed_sign_ins_per_address, self.failed_sign_ins_per_account, self.failed_sign_in_window
        )


def throttled_message(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return (
        f"Too many failed sign-ins from your address: try again in {minutes} minute"
        f"{'' if minutes == 1 else 's'}, or ask an administrator."
    )


class ThrottledLoginHandler(LoginHandler):
    """The sign-in form of a ThrottledSignIn authenticator. An unknown name, a wrong password and an
    account locked from elsewhere get the same answer; a throttled address is told to wait, whatever
    name it tries. Every refused sign-in counts, the throttled ones excepted."""

    def precheck(self, username: str, password: str) -> str | None:
        """A refusal decided before any password is checked (the name is outside the rule), or None."""
        if not self.authenticator.validate_username(username):
            return self.authenticator.username_refusal([username])
        return None

    async def refusal(self, username: str, password: str) -> str:
        """What a refused sign-in is told; the same for every name unless the password was right."""
        return INVALID_CREDENTIALS

    async def post(self):
        authenticator = self.authenticator
        throttle = authenticator.sign_in_throttle
        context = getattr(self.request.connection, "context", None)
        peer = getattr(context, "address", None)
        address = client_address(
            peer[0] if isinstance(peer, tuple) else self.request.remote_ip,
            self.request.headers.get("X-Forwarded-For"),
            authenticator.trusted_proxies,
        )
        typed = self.get_body_argument("username", "", strip=True)
        password = self.get_body_argument("password", "", strip=False)
        username = authenticator.normalize_username(typed)
        shown = typed[:64]

        wait = throttle.wait(username, address)
        if wait:
            self.log.warning("Sign-in of %r from %s throttled for %.0fs", username[:64], address, wait)
            await self._refuse(429, throttled_message(wait), shown)
            return
        refusal = self.precheck(username, password)
        if refusal is None:
            data = {
                name: self.get_body_argument(name, strip=False)
                for name in self.request.body_arguments
                if name != "_xsrf"
            }
            data["username"] = username
            user = await self.login_user(data)
            if user:
                throttle.succeeded(username, address)
                self._jupyterhub_user = user
                self.redirect(self.get_next_url(user))
                return
            refusal = await self.refusal(username, password)
        throttle.failed(username, address)
        wait = throttle.wait(username, address)
        if wait:
            await self._refuse(429, throttled_message(wait), shown)
        else:
            await self._refuse(403, refusal, shown)

    async def _refuse(self, status: int, message: str, username: str) -> None:
        self.set_status(status)
        self.finish(await self._render(login_error=message, username=username))
