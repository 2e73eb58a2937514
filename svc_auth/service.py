"""The ``auth`` nameko service: thin entrypoints over svc_auth's use cases."""

from __future__ import annotations

from typing import Any

from nameko.timer import timer

from common.context import CallContextProvider
from common.db import check_database, database
from common.errors import BookstoreError
from common.events import OutboxRelay
from common.idempotency import purge_expired, run_once
from common.rpc import rpc
from svc_auth import accounts
from svc_auth.models import AuthIdempotencyKey, AuthOutboxMessage, Base
from svc_auth.roles import scopes_for
from svc_auth.signing import TokenSigning


class AuthService:
    name = "auth"

    db = database(Base)
    call_context = CallContextProvider()
    outbox_relay = OutboxRelay(Base, AuthOutboxMessage)
    signer = TokenSigning()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
            self.signer.check(session)
        return {"service": self.name, "status": "ok", "outbox_backlog": self.outbox_relay.backlog()}

    @rpc(expected_exceptions=BookstoreError)
    def register(
        self, registration: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return run_once(
                session,
                AuthIdempotencyKey,
                scope="register",
                key=idempotency_key,
                request=registration,
                operation=lambda: accounts.register(session, registration),
            )

    @rpc(expected_exceptions=BookstoreError)
    def login(self, email: str, password: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            user = accounts.authenticate(session, email, password)
            return self.signer.access_token(
                session,
                subject=str(user.id),
                roles=list(user.roles),
                scopes=scopes_for(user.roles),
            )

    @rpc(expected_exceptions=BookstoreError)
    def get_user(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return accounts.get_user(session, user_id)

    @rpc
    def get_jwks(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            return self.signer.key_set(session)

    @timer(interval=3600)
    def forget_idempotency_keys(self) -> None:
        with self.db.get_session() as session:
            purge_expired(session, AuthIdempotencyKey)
