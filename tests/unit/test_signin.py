"""Sign-in rules in process: the username rule, who is admin by name, the throttle of failed sign-ins
(with an injected clock) and the client address it counts against."""

from __future__ import annotations

import logging
import re
import string
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from hub.auth import configure_authentication, throttle
from hub.auth.names import DEFAULT_RULE, UsernameRule, rule_text
from hub.auth.throttle import SignInThrottle, client_address
from hub.settings import DEFAULT_USERNAME_PATTERN, Settings, SettingsError

# What IAM accepts in a tag value (besides letters and digits, which may be any Unicode letter).
IAM_TAG_VALUE_SYMBOLS = set(" _.:/=+-@")
EC2_FILTER_WILDCARDS = set("*?")


def checker(pattern: str = DEFAULT_USERNAME_PATTERN) -> UsernameRule:
    return UsernameRule(username_pattern=pattern)


# --- the username rule ---


@pytest.mark.parametrize(
    "name", ["alice", "a", "0day", "ann.lee", "bob_s", "x-y", "eve+lab", "kim@example.org", "a" * 64]
)
def test_the_default_rule_admits_plain_names(name):
    assert checker().validate_username(name)


@pytest.mark.parametrize(
    "name",
    [
        "alic?",
        "a*",
        "*",
        "?",
        "Alice",
        "a b",
        " alice",
        "-alice",
        ".alice",
        "a/b",
        "o'brien",
        "a,b",
        "a!",
        "",
        "a" * 65,
    ],
)
def test_the_default_rule_refuses_wildcards_capitals_spaces_and_symbols(name):
    assert not checker().validate_username(name)


def test_every_character_the_default_rule_admits_is_safe_in_tags_filters_keys_and_urls():
    admitted = {ch for ch in map(chr, range(32, 0x2FF)) if re.fullmatch(DEFAULT_USERNAME_PATTERN, "a" + ch)}
    assert admitted <= set(string.ascii_lowercase + string.digits) | IAM_TAG_VALUE_SYMBOLS
    assert not admitted & EC2_FILTER_WILDCARDS
    assert not admitted & set("/ %#&")  # the proxy's URL paths and S3 keys take them as they are


def test_the_whole_name_must_match_even_when_an_operator_forgets_the_anchor():
    relaxed = checker(r"[a-z]+")
    assert relaxed.validate_username("alice")
    assert not relaxed.validate_username("alice*")


def test_a_refusal_says_what_is_allowed():
    assert checker().username_refusal(["alic?"]) == f"“alic?” is not a valid username. {DEFAULT_RULE}"
    assert "“a*”, “*” are not valid usernames" in checker().username_refusal(["a*", "*"])
    assert rule_text(r"^[a-z*?]+$") == "Usernames on this hub match the pattern ^[a-z*?]+$."
    long = checker().username_refusal(["x" * 10_000])
    assert len(long) < 300, "a huge name is quoted short"


def test_an_existing_user_outside_the_rule_is_reported_by_name_with_the_rule(caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(ValueError, match=re.escape(DEFAULT_USERNAME_PATTERN)):
        checker().add_user(SimpleNamespace(name="a*", admin=False))
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "'a*'" in record.getMessage()
    assert DEFAULT_USERNAME_PATTERN in record.getMessage()
    assert DEFAULT_RULE in record.getMessage()
    checker().add_user(SimpleNamespace(name="alice", admin=False))


# --- settings and who is admin by name ---


def settings(**env: str) -> Settings:
    return Settings.from_env(
        {"EC2HUB_STATE_DIR": "/tmp/ec2hub-unit", "EC2HUB_ADMIN_PASSWORD": "x" * 20, **env}
    )


LDAP_ENV = {
    "EC2HUB_LDAP_URL": "ldap://127.0.0.1:3890",
    "EC2HUB_LDAP_TLS": "none",
    "EC2HUB_LDAP_BIND_DN_TEMPLATE": "uid={username},ou=people,dc=example,dc=org",
}
OAUTH_ENV = {
    "EC2HUB_OAUTH_AUTHORIZE_URL": "https://idp.example.org/auth",
    "EC2HUB_OAUTH_TOKEN_URL": "https://idp.example.org/token",
    "EC2HUB_OAUTH_USERDATA_URL": "https://idp.example.org/me",
    "EC2HUB_OAUTH_CLIENT_ID": "hub",
    "EC2HUB_OAUTH_CLIENT_SECRET": "s3cret",
}


def test_the_username_pattern_is_the_default_and_can_be_relaxed():
    assert settings().username_pattern == DEFAULT_USERNAME_PATTERN == r"^[a-z0-9][a-z0-9._@+-]{0,63}$"
    assert settings(EC2HUB_USERNAME_PATTERN=r"^[a-z*?]+$").username_pattern == r"^[a-z*?]+$"
    with pytest.raises(SettingsError, match="EC2HUB_USERNAME_PATTERN"):
        settings(EC2HUB_USERNAME_PATTERN="^[a-z")
    c = Config()
    configure_authentication(c, settings(EC2HUB_STATE_DIR="/tmp/ec2hub-unit"))
    assert c.Authenticator.username_pattern == DEFAULT_USERNAME_PATTERN


def test_sign_up_has_its_admin_account_by_name():
    c = Config()
    configure_authentication(c, settings())
    assert c.Authenticator.admin_users == {"admin"}


@pytest.mark.parametrize("method, env", [("ldap", LDAP_ENV), ("oauth", OAUTH_ENV)])
def test_with_a_provider_nobody_is_admin_by_name_unless_the_operator_names_them(method, env):
    c = Config()
    configure_authentication(c, settings(EC2HUB_AUTH=method, **env))
    assert "admin_users" not in c.Authenticator, "a provider account called admin is not an admin"

    c = Config()
    configure_authentication(c, settings(EC2HUB_AUTH=method, EC2HUB_ADMIN_USER="ops-lead", **env))
    assert c.Authenticator.admin_users == {"ops-lead"}


def test_an_admin_name_outside_the_rule_stops_the_hub_with_the_variable_to_fix():
    with pytest.raises(SettingsError, match="EC2HUB_ADMIN_USER='Root\\*'"):
        configure_authentication(Config(), settings(EC2HUB_ADMIN_USER="Root*"))


def test_an_admin_password_longer_than_bcrypt_takes_is_refused_at_start():
    with pytest.raises(SettingsError, match="72 bytes"):
        configure_authentication(Config(), settings(EC2HUB_ADMIN_PASSWORD="é" * 40))


def test_trusted_proxies_are_networks():
    assert settings(EC2HUB_TRUSTED_PROXIES="10.0.1.0/24, 10.0.2.7").trusted_proxies == (
        "10.0.1.0/24",
        "10.0.2.7/32",
    )
    with pytest.raises(SettingsError, match="EC2HUB_TRUSTED_PROXIES"):
        settings(EC2HUB_TRUSTED_PROXIES="the load balancer")
    c = Config()
    configure_authentication(c, settings(EC2HUB_TRUSTED_PROXIES="10.0.1.0/24"))
    assert c.ThrottledSignIn.trusted_proxies == ["10.0.1.0/24"]


# --- the throttle ---


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_five_failures_from_one_address_across_names_hold_it_for_ten_minutes(clock):
    limits = SignInThrottle(clock=clock)
    for n in range(5):
        assert limits.wait(f"name{n}", "203.0.113.9") == 0
        limits.failed(f"name{n}", "203.0.113.9")
        clock.now += 30
    assert limits.wait("alice", "203.0.113.9") == pytest.approx(600 - 150), "any name, the right one too"
    assert limits.wait("alice", "198.51.100.1") == 0, "another address is not held"
    clock.now += 449
    assert limits.wait("alice", "203.0.113.9") == pytest.approx(1)
    clock.now += 1
    assert limits.wait("alice", "203.0.113.9") == 0, "the oldest failure left the window"
    limits.failed("name5", "203.0.113.9")
    assert limits.wait("alice", "203.0.113.9") == pytest.approx(30), "the window slides"


def test_an_account_locks_only_for_the_address_that_failed_so_nobody_can_lock_the_admin_out(clock):
    # Many people behind one address: the operator raised the per-address limit.
    limits = SignInThrottle(per_address=20, per_account=5, clock=clock)
    for _ in range(5):
        limits.failed("admin", "203.0.113.9")
    assert limits.wait("admin", "203.0.113.9") == pytest.approx(600)
    assert limits.wait("bob", "203.0.113.9") == 0, "the address itself is below its limit"
    assert limits.wait("admin", "198.51.100.1") == 0, "the admin, elsewhere, signs in as usual"


def test_a_success_forgives_the_account_not_the_address(clock):
    limits = SignInThrottle(per_address=5, per_account=3, clock=clock)
    for name in ("alice", "alice", "carl", "dana"):
        limits.failed(name, "203.0.113.9")
    limits.succeeded("alice", "203.0.113.9")
    limits.failed("alice", "203.0.113.9")
    assert limits.wait("erin", "203.0.113.9") > 0, "five failures from the address, whatever came between"
    limits = SignInThrottle(per_address=50, per_account=3, clock=clock)
    for _ in range(2):
        limits.failed("alice", "203.0.113.9")
    limits.succeeded("alice", "203.0.113.9")
    limits.failed("alice", "203.0.113.9")
    assert limits.wait("alice", "203.0.113.9") == 0


def test_forgotten_failures_are_swept(monkeypatch, clock):
    monkeypatch.setattr(throttle, "SWEEP_AT", 10)
    limits = SignInThrottle(clock=clock)
    for n in range(10):
        limits.failed(f"name{n}", f"198.51.100.{n}")
    clock.now += 601
    limits.failed("late", "203.0.113.9")
    assert len(limits._by_address) == 1 and len(limits._by_account) == 1


# --- the client address ---


@pytest.mark.parametrize(
    "peer, forwarded, trusted, expected",
    [
        ("127.0.0.1", None, (), "127.0.0.1"),
        # configurable-http-proxy, on loopback, appends the address it was connected from.
        ("127.0.0.1", "203.0.113.9", (), "203.0.113.9"),
        ("::ffff:127.0.0.1", "::ffff:203.0.113.9", (), "203.0.113.9"),
        # What a client writes itself is left of what the proxy wrote: not believed.
        ("127.0.0.1", "198.51.100.1, 203.0.113.9", (), "203.0.113.9"),
        # A user's instance calling the hub's port directly says what it likes: its own address counts.
        ("10.0.3.7", "198.51.100.1", (), "10.0.3.7"),
        ("127.0.210.5", "198.51.100.1", (), "127.0.210.5"),
        # Behind a load balancer: its subnets are trusted, so the address it saw counts.
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.1.20", ("10.0.1.0/24",), "203.0.113.9"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.1.20", (), "10.0.1.20"),
        ("127.0.0.1", "not-an-address", (), "not-an-address"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == expected
