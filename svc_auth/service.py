"""The ``auth`` nameko service: thin entrypoints over svc_auth's use cases."""

from __future__ import annotations

import logging
from typing import Any

from nameko.timer import timer

from common import context
from common.context import CallContextProvider
from common.db import check_database, database, utcnow
from common.errors import BookstoreError
from common.events import OutboxRelay
from common.idempotency import purge_expired, run_once
from common.metrics import ServiceMetrics
from common.rpc import rpc
from svc_auth import accounts, addresses, admin, audit, domain, maintenance, mfa, sessions
from svc_auth.models import AuthIdempotencyKey, AuthOutboxMessage, Base
from svc_auth.settings import Settings
from svc_auth.signing import Sealing, TokenSigning, key_age

log = logging.getLogger(__name__)


class AuthService:
    name = "auth"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    outbox_relay = OutboxRelay(Base, AuthOutboxMessage)
    signer = TokenSigning()
    sealer = Sealing()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
            self.signer.check(session)
        return {"service": self.name, **self.outbox_relay.health()}

    # -- registration and verification ---------------------------------------------------

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
    def verify_email(self, token: str) -> None:
        with self.db.get_session() as session:
            accounts.verify_email(session, token)

    @rpc(expected_exceptions=BookstoreError)
    def resend_verification(self, email: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return accounts.resend_verification(session, email)

    # -- logging in ----------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def login(self, email: str, password: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return sessions.login(session, self.signer, email, password)

    @rpc(expected_exceptions=BookstoreError)
    def login_mfa(self, mfa_token: str, code: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return sessions.complete_mfa_login(session, self.signer, self.sealer, mfa_token, code)

    @rpc(expected_exceptions=BookstoreError)
    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return sessions.refresh(session, self.signer, refresh_token)

    @rpc(expected_exceptions=BookstoreError)
    def logout(self, refresh_token: str) -> None:
        with self.db.get_session() as session:
            sessions.logout(session, refresh_token)

    # -- the caller's own account --------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def get_user(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return accounts.get_user(session, user_id)

    @rpc(expected_exceptions=BookstoreError)
    def live_user_ids(self, user_ids: list[str]) -> list[str]:
        """The ids among ``user_ids`` of accounts that exist and are not deleted."""
        with self.db.get_session() as session:
            return accounts.live_user_ids(session, user_ids)

    @rpc(expected_exceptions=BookstoreError)
    def update_profile(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return accounts.update_profile(session, user_id, changes)

    @rpc(expected_exceptions=BookstoreError)
    def change_password(self, user_id: str, current_password: str, new_password: str) -> None:
        with self.db.get_session() as session:
            accounts.change_password(session, user_id, current_password, new_password)

    @rpc(expected_exceptions=BookstoreError)
    def request_password_reset(self, email: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return accounts.request_password_reset(session, email)

    @rpc(expected_exceptions=BookstoreError)
    def reset_password(self, token: str, new_password: str) -> None:
        with self.db.get_session() as session:
            accounts.reset_password(session, token, new_password)

    @rpc(expected_exceptions=BookstoreError)
    def delete_account(self, user_id: str, password: str) -> None:
        with self.db.get_session() as session:
            accounts.delete_account(session, user_id, password)

    @rpc(expected_exceptions=BookstoreError)
    def start_mfa_enrolment(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            user = accounts.find_user(session, user_id, for_update=True)
            return mfa.start_enrolment(session, self.sealer, user)

    @rpc(expected_exceptions=BookstoreError)
    def confirm_mfa_enrolment(self, user_id: str, code: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            user = accounts.find_user(session, user_id, for_update=True)
            return mfa.confirm_enrolment(session, self.sealer, user, code)

    @rpc(expected_exceptions=BookstoreError)
    def disable_mfa(self, user_id: str, password: str) -> None:
        with self.db.get_session() as session:
            user = accounts.find_user(session, user_id, for_update=True)
            accounts.check_password(user, password)
            mfa.disable(session, user)

    @rpc(expected_exceptions=BookstoreError)
    def regenerate_recovery_codes(self, user_id: str, password: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            user = accounts.find_user(session, user_id, for_update=True)
            accounts.check_password(user, password)
            return mfa.regenerate_recovery_codes(session, user)

    # -- address book --------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def list_addresses(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return addresses.list_addresses(session, user_id)

    @rpc(expected_exceptions=BookstoreError)
    def get_address(self, user_id: str, address_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return addresses.get_address(session, user_id, address_id)

    @rpc(expected_exceptions=BookstoreError)
    def get_shipping_details(self, user_id: str, address_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return addresses.shipping_details(session, user_id, address_id)

    @rpc(expected_exceptions=BookstoreError)
    def add_address(
        self, user_id: str, fields: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return run_once(
                session,
                AuthIdempotencyKey,
                scope=f"add_address:{user_id}",
                key=idempotency_key,
                request=fields,
                operation=lambda: addresses.add_address(session, user_id, fields),
            )

    @rpc(expected_exceptions=BookstoreError)
    def update_address(
        self, user_id: str, address_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return addresses.update_address(session, user_id, address_id, changes)

    @rpc(expected_exceptions=BookstoreError)
    def delete_address(self, user_id: str, address_id: str) -> None:
        with self.db.get_session() as session:
            addresses.delete_address(session, user_id, address_id)

    # -- administration (the gateway requires admin:users; so should any other caller) --

    @rpc(expected_exceptions=BookstoreError)
    def list_users(self, **filters: Any) -> dict[str, Any]:
        with self.db.get_session() as session:
            return admin.list_users(session, **filters)

    @rpc(expected_exceptions=BookstoreError)
    def admin_get_user(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return admin.get_user(session, user_id)

    @rpc(expected_exceptions=BookstoreError)
    def set_roles(self, user_id: str, roles: list[str]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return admin.set_roles(session, _actor(), user_id, roles)

    @rpc(expected_exceptions=BookstoreError)
    def suspend_user(self, user_id: str, reason: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return admin.suspend(session, _actor(), user_id, reason)

    @rpc(expected_exceptions=BookstoreError)
    def reinstate_user(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return admin.reinstate(session, _actor(), user_id)

    @rpc(expected_exceptions=BookstoreError)
    def list_audit_events(self, **filters: Any) -> dict[str, Any]:
        with self.db.get_session() as session:
            return audit.list_events(session, **filters)

    @rpc
    def record_token_refusals(self, refusals: list[dict[str, Any]]) -> int:
        """The gateway reports the tokens it refused, in batches (see gateway/audit.py)."""
        with self.db.get_session() as session:
            return audit.record_token_refusals(session, refusals)

    @rpc(expected_exceptions=BookstoreError)
    def access_revocations(self, since: float | None = None) -> dict[str, Any]:
        """Gateways poll this: access tokens revoked before they expire (logout, a
        reused refresh token, suspension, deletion, a new password, new roles)."""
        with self.db.get_session() as session:
            return sessions.access_revocations(session, since)

    # -- keys ----------------------------------------------------------------------------

    @rpc
    def get_jwks(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            return self.signer.key_set(session)

    @rpc(expected_exceptions=BookstoreError)
    def rotate_signing_key(self) -> dict[str, Any]:
        """Operators: a new signing key now (the previous one keeps verifying)."""
        with self.db.get_session() as session:
            kid = self.signer.rotate(session)
            audit.record(session, "signing_key.rotated", details={"kid": kid})
            return {"kid": kid, "jwks": self.signer.key_set(session)}

    @timer(interval=3600)
    def rotate_old_signing_key(self) -> None:
        with self.db.get_session() as session:
            age = key_age(session)
            if domain.rotation_due(age, Settings.current().signing_key_max_age):
                kid = self.signer.rotate(session)
                audit.record(session, "signing_key.rotated", details={"kid": kid, "age": str(age)})
                log.info("signing key rotated", extra={"kid": kid})

    @timer(interval=3600)
    def forget_idempotency_keys(self) -> None:
        with self.db.get_session() as session:
            purge_expired(session, AuthIdempotencyKey)

    @timer(interval=600)
    def forget_expired_secrets(self) -> None:
        with self.db.get_session() as session:
            maintenance.purge(session, utcnow())


def _actor() -> str:
    return context.current().user_id or ""
