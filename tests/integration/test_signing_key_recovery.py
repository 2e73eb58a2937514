"""Signing keys sealed with another passphrase (a second checkout, a lost .env.local):
found before anything starts, explained, and replaced by `bookstore reset-signing-keys`
(docs/decisions/0091). A database of its own: the suite's platform keeps its keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from common.db import utcnow
from ops import cli, databases, run
from svc_auth.models import RefreshToken, SigningKey, User
from svc_auth.signing import (
    SealedKeysUnreadable,
    TokenSigner,
    current_signing_key,
    unreadable_key_ids,
)
from tests.harness import NAMESPACE
from tests.harness import test_database_url as database_url_for_tests

OLD, NEW = b"the passphrase of the first checkout", b"a new .env.local's passphrase"


@pytest.fixture(scope="module")
def auth_engine() -> Iterator[Engine]:
    url = database_url_for_tests("auth", f"{NAMESPACE}_keys")
    databases.prepare("auth", url, recreate=True)
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sealed_with_old(auth_engine, monkeypatch) -> Iterator[Session]:
    """A key sealed with OLD and one signed-in session; the environment says NEW."""
    with Session(auth_engine) as session:
        session.query(RefreshToken).delete()
        session.query(User).delete()
        session.query(SigningKey).delete()
        current_signing_key(session, OLD)
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", roles=["customer"])
        session.add(user)
        session.flush()
        session.add(
            RefreshToken(
                family_id=uuid.uuid4(),
                user_id=user.id,
                token_hash=uuid.uuid4().hex,
                issued_at=utcnow(),
                expires_at=utcnow() + timedelta(days=7),
            )
        )
        session.commit()
    monkeypatch.setenv("AUTH_DATABASE_URL", auth_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AUTH_KEY_PASSPHRASE", NEW.decode())
    with Session(auth_engine) as session:
        yield session


def test_keys_sealed_with_another_passphrase_are_named_with_the_way_out(sealed_with_old):
    kids = unreadable_key_ids(sealed_with_old, NEW)
    assert len(kids) == 1
    assert unreadable_key_ids(sealed_with_old, OLD) == []

    with pytest.raises(SealedKeysUnreadable) as raised:
        TokenSigner(NEW).check(sealed_with_old)
    advice = str(raised.value)
    assert kids[0] in advice
    assert "set AUTH_KEY_PASSPHRASE back" in advice
    assert "bookstore reset-signing-keys" in advice
    assert "session then ends" in advice


def test_bin_run_refuses_to_start_with_keys_it_cannot_open(sealed_with_old):
    with pytest.raises(run.StartupRefused) as refused:
        run._check_signing_keys()
    assert "auth cannot start" in str(refused.value)
    assert "bookstore reset-signing-keys" in str(refused.value)


def test_reset_replaces_the_keys_and_ends_every_session(sealed_with_old, capsys):
    old_kid = unreadable_key_ids(sealed_with_old, NEW)[0]

    assert cli.main(["reset-signing-keys", "--yes"]) == 0

    said = capsys.readouterr().out
    assert "Every signed-in session ends" in said
    assert "1 session(s) ended" in said
    sealed_with_old.expire_all()
    assert unreadable_key_ids(sealed_with_old, NEW) == []
    assert sealed_with_old.get(SigningKey, old_kid).retired_at is not None
    TokenSigner(NEW).check(sealed_with_old)
    assert (
        sealed_with_old.scalars(
            select(RefreshToken.revoked_at).where(RefreshToken.revoked_at.is_(None))
        ).all()
        == []
    )


def test_reset_asks_first_and_changes_nothing_without_consent(sealed_with_old, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert cli.main(["reset-signing-keys"]) == 1
    assert len(unreadable_key_ids(sealed_with_old, NEW)) == 1


def test_reset_leaves_keys_that_open_alone(sealed_with_old, monkeypatch, capsys):
    monkeypatch.setenv("AUTH_KEY_PASSPHRASE", OLD.decode())
    assert cli.main(["reset-signing-keys", "--yes"]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    assert sealed_with_old.scalars(select(SigningKey.retired_at)).all() == [None]
