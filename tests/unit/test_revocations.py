"""The gateway's list of access tokens revoked before they expire (no services: the
poll is given pages as auth's ``access_revocations`` answers them)."""

from __future__ import annotations

import time

import pytest

from gateway.revocations import OVERLAP_SECONDS, RevocationList

USER = "6f0e5c0a-3c1b-4d53-9a53-2b7d4e8f1a90"
OTHER = "0b6c0f7e-5a43-4c1d-9a67-1f0a2b3c4d5e"
SESSION = "5b1f8a52-1d2e-4c3b-8f9a-0e1d2c3b4a59"


def claims(sub=USER, sid=SESSION, iat=None):
    return {"sub": sub, "sid": sid, "iat": time.time() if iat is None else iat}


def revocation(user_id=USER, session_id=None, revoked_at=None):
    return {
        "user_id": user_id,
        "session_id": session_id,
        "revoked_at": time.time() if revoked_at is None else revoked_at,
    }


def test_a_revoked_login_refuses_its_tokens_and_no_other():
    revoked = RevocationList(None, 1)
    revoked.apply([revocation(session_id=SESSION)], kept_seconds=960)
    assert revoked.is_revoked(claims())
    assert not revoked.is_revoked(claims(sid="another-login"))
    assert not revoked.is_revoked(claims(sub=OTHER, sid="x"))


def test_a_user_wide_revocation_refuses_tokens_issued_before_it():
    now = time.time()
    revoked = RevocationList(None, 1)
    revoked.apply([revocation(revoked_at=now)], kept_seconds=960)
    assert revoked.is_revoked(claims(iat=now - 60))
    # A millisecond counts: a login right after a password change works, a token
    # issued just before it does not.
    assert revoked.is_revoked(claims(iat=now - 0.001))
    assert not revoked.is_revoked(claims(iat=now + 0.001))
    assert not revoked.is_revoked(claims(sub=OTHER, iat=now - 60))
    # The latest revocation counts, whatever order they come in.
    revoked.apply([revocation(revoked_at=now - 600)], kept_seconds=960)
    assert revoked.is_revoked(claims(iat=now - 60))


def test_revocations_older_than_a_token_lifetime_are_forgotten():
    revoked = RevocationList(None, 1)
    old = time.time() - 1000
    revoked.apply([revocation(session_id=SESSION, revoked_at=old)], kept_seconds=960)
    assert not revoked.is_revoked(claims())


def test_polling_follows_pages_then_rereads_a_little_before_the_newest():
    now = time.time()
    first = revocation(session_id=SESSION, revoked_at=now - 5)
    second = revocation(user_id=OTHER, revoked_at=now - 2)
    pages = {
        None: {"items": [first], "more": True},
        first["revoked_at"]: {"items": [second], "more": False},
    }
    asked = []

    def fetch(since):
        asked.append(since)
        return {**pages.get(since, {"items": [], "more": False}), "kept_seconds": 960}

    revoked = RevocationList(fetch, 1)
    assert not revoked.loaded
    revoked.poll()
    assert revoked.loaded and asked == [None, first["revoked_at"]]
    assert revoked.is_revoked(claims())
    assert revoked.is_revoked(claims(sub=OTHER, sid=None, iat=int(now) - 60))
    revoked.poll()
    # The overlap: a revocation that committed late with an earlier time is still read.
    assert asked[-1] == second["revoked_at"] - OVERLAP_SECONDS


def test_while_auth_is_away_the_list_loaded_is_kept():
    answers = [{"items": [revocation(session_id=SESSION)], "more": False}]

    def fetch(after):
        if not answers:
            raise ConnectionError("auth is away")
        return {**answers.pop(), "kept_seconds": 960}

    revoked = RevocationList(fetch, 1)
    revoked.poll()
    with pytest.raises(ConnectionError):
        revoked.poll()
    assert revoked.loaded and revoked.is_revoked(claims())
