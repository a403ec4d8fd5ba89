"""A small, real OpenID Connect provider for the tests: discovery, a sign-in form, the code grant with
PKCE, HS256 ID tokens and userinfo, on a free loopback port in a thread of its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt

CODE_LIFETIME = 60  # seconds an authorization code may wait for its exchange
TOKEN_LIFETIME = 3600
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    groups: tuple[str, ...] = ()

    @property
    def sub(self) -> str:
        # A stable identifier that is not the username, as real providers issue.
        return hashlib.sha256(self.username.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for, until it is exchanged (once) or expires."""

    client_id: str
    redirect_uri: str
    account: Account
    scopes: tuple[str, ...]
    nonce: str
    code_challenge: str
    expires: float


@dataclass(frozen=True)
class AccessToken:
    account: Account
    scopes: tuple[str, ...]
    expires: float


class OAuthError(Exception):
    """An RFC 6749 error answer: `error` code, description and HTTP status."""

    def __init__(self, error: str, description: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class OIDCProvider:
    """The provider: `start()`, register clients, then point a relying party at `issuer`."""

    def __init__(self, accounts: Iterable[Account], clock: Callable[[], float] = time.time) -> None:
        self.accounts = {account.username: account for account in accounts}
        self.clock = clock
        self.clients: dict[str, Client] = {}
        self._codes: dict[str, Grant] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def register_client(self, client_id: str, client_secret: str, redirect_uris: Iterable[str]) -> None:
        self.clients[client_id] = Client(client_id, client_secret, tuple(redirect_uris))

    def start(self) -> OIDCProvider:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(STOP_TIMEOUT)

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the endpoints' logic, free of HTTP ---

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "scopes_supported": ["openid", "profile", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "preferred_username", "name", "groups"],
        }

    def client_and_redirect(self, params: dict[str, str]) -> tuple[Client, str]:
        """The client and redirect URI of an authorization request; errors here must not redirect."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "Unknown client_id.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise OAuthError("invalid_request", f"redirect_uri {redirect_uri!r} is not registered.")
        return client, redirect_uri

    def check_authorization_request(self, params: dict[str, str]) -> None:
        """Errors that are sent back to the (verified) redirect URI."""
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "Only the authorization-code flow is offered.")
        if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "Only the S256 code challenge method is supported.")

    def sign_in(self, params: dict[str, str], username: str, password: str) -> str | None:
        """A code for the account, or None when the password is wrong."""
        account = self.accounts.get(username)
        if account is None or not hmac.compare_digest(account.password.encode(), password.encode()):
            return None
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = Grant(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                account=account,
                scopes=tuple(params.get("scope", "").split()),
                nonce=params.get("nonce", ""),
                code_challenge=params.get("code_challenge", ""),
                expires=self.clock() + CODE_LIFETIME,
            )
        return code

    def authenticate_client(self, authorization: str, form: dict[str, str]) -> Client:
        """client_secret_basic or client_secret_post (RFC 6749 §2.3.1), never both."""
        if authorization.startswith("Basic "):
            if "client_secret" in form:
                raise OAuthError("invalid_request", "Use one client authentication method.")
            try:
                decoded = base64.b64decode(authorization[6:], validate=True).decode()
                client_id, client_secret = (unquote(part) for part in decoded.split(":", 1))
            except ValueError:
                raise OAuthError(
                    "invalid_client", "Malformed basic credentials.", HTTPStatus.UNAUTHORIZED
                ) from None
        else:
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.client_secret.encode(), client_secret.encode()):
            raise OAuthError("invalid_client", "Client authentication failed.", HTTPStatus.UNAUTHORIZED)
        return client

    def exchange_code(self, client: Client, form: dict[str, str]) -> dict:
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "Only authorization_code is offered.")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use, even when refused below
        if grant is None or grant.expires < self.clock():
            raise OAuthError("invalid_grant", "Unknown, used or expired code.")
        if grant.client_id != client.client_id or grant.redirect_uri != form.get("redirect_uri"):
            raise OAuthError("invalid_grant", "The code was issued to another client or redirect_uri.")
        if grant.code_challenge:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if not hmac.compare_digest(challenge, grant.code_challenge):
                raise OAuthError("invalid_grant", "PKCE verification failed.")
        now = self.clock()
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access_token] = AccessToken(grant.account, grant.scopes, now + TOKEN_LIFETIME)
        answer = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": " ".join(grant.scopes),
        }
        if "openid" in grant.scopes:
            id_claims = {
                "iss": self.issuer,
                "sub": grant.account.sub,
                "aud": client.client_id,
                "azp": client.client_id,
                "iat": int(now),
                "auth_time": int(now),
                "exp": int(now) + TOKEN_LIFETIME,
                **self.claims(grant.account, grant.scopes),
            }
            if grant.nonce:
                id_claims["nonce"] = grant.nonce
            # OpenID Connect Core §10.1: HS256 ID tokens are signed with the client secret.
            answer["id_token"] = jwt.encode(id_claims, client.client_secret, algorithm="HS256")
        return answer

    def userinfo(self, authorization: str) -> dict:
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        with self._lock:
            access = self._tokens.get(token)
        if access is None or access.expires < self.clock():
            raise OAuthError("invalid_token", "Unknown or expired access token.", HTTPStatus.UNAUTHORIZED)
        return self.claims(access.account, access.scopes)

    @staticmethod
    def claims(account: Account, scopes: Iterable[str]) -> dict:
        # Like Okta, Dex or authentik: the groups claim only for the groups scope.
        scopes = set(scopes)
        claims = {"sub": account.sub}
        if "profile" in scopes:
            claims.update(preferred_username=account.username, name=account.username.capitalize())
        if "groups" in scopes:
            claims["groups"] = list(account.groups)
        return claims


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Test Identity Provider</title>
<style>
body {{ font-family: sans-serif; background: #eef1f5; display: flex; justify-content: center; }}
main {{ background: white; margin-top: 10vh; padding: 2em 2.5em; border-radius: 8px; width: 22em;
       box-shadow: 0 2px 8px rgba(0,0,0,.15); }}
label {{ display: block; margin: 1em 0 .3em; }}
input[type=text], input[type=password] {{ width: 100%; padding: .5em; box-sizing: border-box; }}
button {{ margin-top: 1.5em; width: 100%; padding: .6em; background: #2456a5; color: white; border: 0;
          border-radius: 4px; font-size: 1em; }}
.error {{ color: #b00020; }}
</style></head>
<body><main>
<h1>Test Identity Provider</h1>
<p><strong>{client}</strong> asks you to sign in.</p>
{error}
<form method="post" action="/authorize">
{hidden}
<label for="username">Username</label><input type="text" id="username" name="username" value="{username}"
 autofocus>
<label for="password">Password</label><input type="password" id="password" name="password">
<button type="submit" id="sign-in">Sign in</button>
</form></main></body></html>
"""

# The authorization request's parameters the form carries from GET to POST.
REQUEST_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def _handler_for(provider: OIDCProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path, _, query = self.path.partition("?")
            params = {k: v[0] for k, v in parse_qs(query).items()}
            if path == "/.well-known/openid-configuration":
                self.send_json(provider.discovery())
            elif path == "/jwks":
                self.send_json({"keys": []})  # HS256 only: nothing public to publish
            elif path == "/authorize":
                self.authorize(params)
            elif path == "/userinfo":
                self.userinfo()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/authorize":
                self.authorize(form, submitted=True)
            elif self.path == "/token":
                try:
                    client = provider.authenticate_client(self.headers.get("Authorization", ""), form)
                    answer = provider.exchange_code(client, form)
                except OAuthError as e:
                    self.send_oauth_error(e)
                else:
                    self.send_json(answer, extra_headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
            elif self.path == "/userinfo":
                self.userinfo()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def authorize(self, params: dict[str, str], submitted: bool = False) -> None:
            try:
                client, redirect_uri = provider.client_and_redirect(params)
            except OAuthError as e:
                self.send_page(HTTPStatus.BAD_REQUEST, f"<h1>Bad request</h1><p>{html.escape(str(e))}</p>")
                return
            state = {"state": params["state"]} if "state" in params else {}
            try:
                provider.check_authorization_request(params)
            except OAuthError as e:
                self.redirect(redirect_uri, {"error": e.error, "error_description": e.description, **state})
                return
            error = ""
            username = params.get("username", "")
            if submitted:
                code = provider.sign_in(params, username, params.get("password", ""))
                if code is not None:
                    self.redirect(redirect_uri, {"code": code, **state})
                    return
                error = '<p class="error" id="error">Wrong username or password.</p>'
            hidden = "\n".join(
                f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
                for name in REQUEST_PARAMS
                if name in params
            )
            page = LOGIN_PAGE.format(
                client=html.escape(client.client_id),
                error=error,
                hidden=hidden,
                username=html.escape(username),
            )
            self.send_page(HTTPStatus.UNAUTHORIZED if error else HTTPStatus.OK, page)

        def userinfo(self) -> None:
            try:
                self.send_json(provider.userinfo(self.headers.get("Authorization", "")))
            except OAuthError as e:
                header = f'Bearer error="{e.error}", error_description="{e.description}"'
                self.send_json({}, e.status, extra_headers={"WWW-Authenticate": header})

        def redirect(self, url: str, params: dict[str, str]) -> None:
            separator = "&" if urlsplit(url).query else "?"
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", f"{url}{separator}{urlencode(params)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def send_page(self, status: HTTPStatus, page: str) -> None:
            body = page.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, data: dict, status: HTTPStatus = HTTPStatus.OK, extra_headers=None) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def send_oauth_error(self, e: OAuthError) -> None:
            headers = {"WWW-Authenticate": "Basic"} if e.status == HTTPStatus.UNAUTHORIZED else {}
            self.send_json({"error": e.error, "error_description": e.description}, e.status, headers)

    return Handler
