"""svc_auth's rules as plain Python (svc_auth/domain.py: throttling, password policy,
token and key lifetimes), sealing, TOTP checks, and the gateway's rate limit settings."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.exceptions import InvalidTag

from common.errors import InvalidInput
from gateway.ratelimit import Decision, Limit, parse_limits, route_groups
from svc_auth import domain, mfa, sessions
from svc_auth.models import LoginThrottle, User
from svc_auth.sealing import Sealer
from svc_auth.settings import Settings as AuthSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = domain.Policy(
    window=timedelta(minutes=15), slow_after=3, lock_after=10, lock_for=timedelta(minutes=15)
)


def failures(count: int, last_ago: timedelta = timedelta(0)) -> LoginThrottle:
    row = LoginThrottle(
        key="account:a@example.com", failures=0, first_failure_at=NOW, last_failure_at=NOW
    )
    for _ in range(count):
        domain.count_failure(row, POLICY, NOW - last_ago)
    return row


def test_no_wait_below_the_slow_down_threshold():
    assert domain.wait_seconds(None, POLICY, NOW) == 0
    assert domain.wait_seconds(failures(2), POLICY, NOW) == 0


def test_delays_double_from_the_threshold_up_to_a_cap():
    assert domain.wait_seconds(failures(3), POLICY, NOW) == 1
    assert domain.wait_seconds(failures(5), POLICY, NOW) == 4
    assert domain.wait_seconds(failures(9), POLICY, NOW) == 30
    assert domain.wait_seconds(failures(5, last_ago=timedelta(seconds=4)), POLICY, NOW) == 0


def test_the_lock_holds_for_its_duration_then_a_new_window_starts():
    row = failures(10)
    assert row.locked_until == NOW + timedelta(minutes=15)
    assert domain.wait_seconds(row, POLICY, NOW + timedelta(minutes=1)) == 14 * 60
    later = NOW + timedelta(minutes=16)
    assert domain.wait_seconds(row, POLICY, later) == 0
    domain.count_failure(row, POLICY, later)
    assert row.failures == 1
    assert row.locked_until is None


def test_old_failures_fall_out_of_the_window():
    row = failures(5)
    assert domain.wait_seconds(row, POLICY, NOW + timedelta(minutes=16)) == 0


def test_accounts_slow_down_and_lock_sooner_than_addresses():
    settings = AuthSettings(AUTH_KEY_PASSPHRASE="unused", account_lock_after=4, lock_seconds=60)
    account, address = domain.account_policy(settings), domain.address_policy(settings)
    assert (account.slow_after, account.lock_after, account.lock_for) == (
        3,
        4,
        timedelta(seconds=60),
    )
    assert (address.slow_after, address.lock_after) == (None, 50)
    assert account.window == address.window == timedelta(seconds=900)


def test_a_signing_key_is_replaced_only_after_an_access_token_lifetime():
    ttl = timedelta(minutes=15)
    assert domain.may_rotate(None, NOW, ttl)
    assert not domain.may_rotate(NOW - timedelta(minutes=14), NOW, ttl)
    assert domain.may_rotate(NOW - ttl, NOW, ttl)


def test_the_timer_rotates_keys_older_than_the_maximum_age():
    assert not domain.rotation_due(None, timedelta(days=30))
    assert not domain.rotation_due(timedelta(days=29), timedelta(days=30))
    assert domain.rotation_due(timedelta(days=30), timedelta(days=30))


@pytest.mark.parametrize(
    "password",
    [
        "short",
        "x" * 257,
        "aaaaaaaaaaaaaa",
        "ababababababab",
        "password1234",
        "Qwertyuiop",
        "iloveyou12",
    ],
)
def test_password_policy_refuses(password):
    with pytest.raises(InvalidInput):
        domain.check_password_policy(password, "ada@example.com")


def test_password_policy_refuses_the_email_and_accepts_a_passphrase():
    with pytest.raises(InvalidInput):
        domain.check_password_policy("ada@example.com", "ada@example.com")
    domain.check_password_policy("correct horse battery staple", "ada@example.com")


def test_sealed_secrets_round_trip_and_need_the_passphrase():
    sealer = Sealer(b"passphrase one")
    sealed = sealer.seal("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert sealer.seal("JBSWY3DPEHPK3PXP") != sealed  # a fresh nonce each time
    assert sealer.unseal(sealed) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(InvalidTag):
        Sealer(b"passphrase two").unseal(sealed)


def test_totp_accepts_one_step_of_drift_and_no_replay():
    sealer = Sealer(b"passphrase")
    secret = pyotp.random_base32()
    user = User(id=uuid.uuid4(), totp_secret=sealer.seal(secret))
    totp = pyotp.TOTP(secret)
    now = time.time()
    assert not mfa.check_totp(sealer, user, totp.at(now - 90), now=now)
    assert mfa.check_totp(sealer, user, totp.at(now - 30), now=now)
    assert mfa.check_totp(sealer, user, totp.at(now), now=now)
    assert not mfa.check_totp(sealer, user, totp.at(now), now=now), "replayed"
    assert not mfa.check_totp(sealer, user, totp.at(now - 30), now=now), "older than the last"
    assert not mfa.check_totp(sealer, user, "abcdef", now=now)


def test_recovery_codes_are_long_and_normalised():
    code = mfa.new_recovery_code()
    assert len(code) == 19 and code.count("-") == 3
    assert mfa.normalize_recovery_code(code.upper().replace("-", " ")) == code.replace("-", "")


def test_rate_limit_settings():
    limits = parse_limits("default=100/1s, credentials=20/1m,search=5/2h")
    assert limits == {
        "default": Limit(100, 1),
        "credentials": Limit(20, 60),
        "search": Limit(5, 7200),
    }
    for bad in ("credentials=20/1m", "default=0/1s", "default=100", "default=10/1d"):
        with pytest.raises(ValueError):
            parse_limits(bad)


def test_credential_routes_are_grouped_in_the_spec():
    groups = route_groups()
    for operation in ("login", "loginMfa", "register", "requestPasswordReset", "refreshTokens"):
        assert groups[operation] == "credentials"
    assert "listProducts" not in groups


def test_a_refused_decision_says_when_to_retry():
    decision = Decision(Limit(5, 30), allowed=False, remaining=0, reset_seconds=12)
    assert not decision.allowed
    assert decision.headers()["Retry-After"] == "12"
    assert decision.headers()["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("since", ["yesterday", True, [1.0], {"t": 1}])
def test_revocations_are_asked_for_since_a_time_in_seconds(since):
    class NoDatabase:
        def __getattr__(self, name):
            raise AssertionError("a refused argument must not reach the database")

    with pytest.raises(InvalidInput) as refused:
        sessions.access_revocations(NoDatabase(), since)
    assert refused.value.args[0].startswith("since:")
