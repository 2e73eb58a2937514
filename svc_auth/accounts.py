"""Account use cases: register and verify, profile, passwords, deletion, administrators.

Nothing here tells a caller whether an address has an account: registering a taken
address, asking for a verification or a reset for an unknown one, all answer the same
and cost the same (a password is hashed either way). The owner of a taken address is
told by email instead (the ``user.registration_attempted`` event).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from svc_auth import audit, domain, mfa, onetime, passwords, roles, sessions, throttle
from svc_auth.emails import normalize_email
from svc_auth.models import Address, User, outbox

log = logging.getLogger(__name__)

VERIFICATION_TTL = timedelta(hours=48)
RESET_TTL = timedelta(hours=1)
ACCEPTED = {
    "message": "Thanks. If the details are valid, we have sent an email with what to do next."
}


def user_to_dict(user: User) -> dict[str, Any]:
    """The account as its owner sees it."""
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "phone": user.phone,
        "roles": list(user.roles),
        "email_verified": user.email_verified_at is not None,
        "mfa_enabled": user.totp_enabled_at is not None,
        "created_at": isoformat(user.created_at),
    }


def find_user(session: Session, user_id: str, *, for_update: bool = False) -> User:
    """The live (not deleted) account, or :class:`NotFound`."""
    user = session.get(User, parse_id(user_id, "user_id"), with_for_update=for_update)
    if user is None or user.status == "deleted":
        raise NotFound("No such user.", {"user_id": user_id})
    return user


def get_user(session: Session, user_id: str) -> dict[str, Any]:
    return user_to_dict(find_user(session, user_id))


#: Most ids :func:`live_user_ids` takes in one call.
MAX_IDS = 5000


def live_user_ids(session: Session, user_ids: list[str]) -> list[str]:
    """The ids among ``user_ids`` of accounts that exist and are not deleted (for the
    copies other services keep of who a customer is: docs/decisions/0141)."""
    if len(user_ids) > MAX_IDS:
        raise InvalidInput(f"At most {MAX_IDS} ids per call.", {"user_ids": len(user_ids)})
    ids = [parse_id(user_id, "user_id") for user_id in user_ids]
    return [
        str(user_id)
        for user_id in session.scalars(
            select(User.id).where(User.id.in_(ids), User.status != "deleted")
        )
    ]


def register(session: Session, registration: dict[str, Any]) -> dict[str, Any]:
    """Creates a customer account (email unverified) and sends the verification token
    in ``user.registered``. A taken address gets the same answer, and its owner an
    email (``user.registration_attempted``); no account changes."""
    schemas.validate("Registration", registration)
    email = normalize_email(registration["email"])
    domain.check_password_policy(registration["password"], email)
    # Hashed before looking, so both outcomes take as long.
    password_hash = passwords.hash_password(registration["password"])
    existing = session.scalars(select(User).where(User.email == email)).first()
    if existing is not None:
        outbox.add(
            session, "user.registration_attempted", {"user_id": str(existing.id), "email": email}
        )
        return ACCEPTED
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=password_hash,
        name=registration.get("name"),
        roles=[roles.CUSTOMER],
        terms_accepted_at=utcnow(),
        status="active",
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        return ACCEPTED  # registered concurrently by the same address
    _send_verification(session, user, "user.registered")
    audit.record(session, "user.registered", subject_id=user.id, actor_id=user.id)
    log.info("user registered", extra={"subject_id": str(user.id)})
    return ACCEPTED


def _send_verification(session: Session, user: User, event_type: str) -> None:
    token = onetime.issue(session, user.id, onetime.VERIFY_EMAIL, VERIFICATION_TTL)
    outbox.add(
        session,
        event_type,
        {
            "user_id": str(user.id),
            "email": user.email,
            "name": user.name,
            # Delivered by email by the notifications service; single use, expiring.
            "verification_token": token,
            "verification_expires_at": isoformat(utcnow() + VERIFICATION_TTL),
        },
    )


def resend_verification(session: Session, email: str) -> dict[str, Any]:
    user = _user_by_email(session, email)
    if user is not None and user.email_verified_at is None and user.status == "active":
        _send_verification(session, user, "user.verification_requested")
    return ACCEPTED


def verify_email(session: Session, token: str) -> None:
    found = onetime.find(session, token, onetime.VERIFY_EMAIL)
    if found is None:
        raise InvalidInput(
            "token: the verification link is invalid, used or expired; ask for a new one.",
            {"field": "token"},
        )
    user = find_user(session, str(found.user_id), for_update=True)
    onetime.use_up_all(session, user.id, onetime.VERIFY_EMAIL)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        audit.record(session, "email.verified", subject_id=user.id, actor_id=user.id)
        outbox.add(session, "user.email_verified", {"user_id": str(user.id), "email": user.email})


def _user_by_email(session: Session, raw_email: str) -> User | None:
    try:
        email = normalize_email(raw_email)
    except InvalidInput:
        return None
    return session.scalars(select(User).where(User.email == email)).first()


def update_profile(session: Session, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch of ``name`` and ``phone`` (null clears)."""
    schemas.validate("ProfileUpdate", changes)
    user = find_user(session, user_id, for_update=True)
    for field in ("name", "phone"):
        if field in changes:
            setattr(user, field, changes[field])
    session.flush()
    session.refresh(user)
    audit.record(
        session, "profile.updated", subject_id=user.id, details={"fields": sorted(changes)}
    )
    outbox.add(
        session,
        "user.profile_updated",
        {"user_id": str(user.id), "name": user.name, "phone": user.phone},
    )
    return user_to_dict(user)


def check_password(user: User, password: str) -> None:
    """Re-authentication for sensitive changes."""
    if not passwords.verify_password(user.password_hash, password):
        raise Unauthenticated("The password is wrong.", {"field": "password"})


def change_password(session: Session, user_id: str, current: str, new: str) -> None:
    user = find_user(session, user_id, for_update=True)
    check_password(user, current)
    _set_password(session, user, new)
    audit.record(session, "password.changed", subject_id=user.id)


def _set_password(session: Session, user: User, new: str) -> None:
    domain.check_password_policy(new, user.email)
    if passwords.verify_password(user.password_hash, new):
        raise InvalidInput(
            "password: choose a password you are not using now.", {"field": "password"}
        )
    user.password_hash = passwords.hash_password(new)
    user.password_changed_at = utcnow()
    sessions.revoke_all(session, user.id)
    outbox.add(session, "user.password_changed", {"user_id": str(user.id), "email": user.email})


def request_password_reset(session: Session, email: str) -> dict[str, Any]:
    user = _user_by_email(session, email)
    if user is not None and user.status == "active":
        token = onetime.issue(session, user.id, onetime.RESET_PASSWORD, RESET_TTL)
        outbox.add(
            session,
            "user.password_reset_requested",
            {
                "user_id": str(user.id),
                "email": user.email,
                "name": user.name,
                "reset_token": token,
                "reset_expires_at": isoformat(utcnow() + RESET_TTL),
            },
        )
        audit.record(session, "password.reset_requested", subject_id=user.id, actor_id=None)
    return ACCEPTED


def reset_password(session: Session, token: str, new: str) -> None:
    found = onetime.find(session, token, onetime.RESET_PASSWORD)
    if found is None:
        raise InvalidInput(
            "token: the reset link is invalid, used or expired; ask for a new one.",
            {"field": "token"},
        )
    user = find_user(session, str(found.user_id), for_update=True)
    _set_password(session, user, new)
    onetime.use_up_all(session, user.id, onetime.RESET_PASSWORD)
    # Proving control of the mailbox also proves the address.
    user.email_verified_at = user.email_verified_at or utcnow()
    throttle.clear(session, throttle.account_key(user.email))
    audit.record(session, "password.reset", subject_id=user.id, actor_id=user.id)


def delete_account(session: Session, user_id: str, password: str) -> None:
    """Anonymises the account on its owner's request: personal data goes, the row stays
    (orders and the audit trail still point at it), every session ends."""
    user = find_user(session, user_id, for_update=True)
    check_password(user, password)
    anonymise(session, user)


def anonymise(session: Session, user: User) -> None:
    former_email = user.email
    mfa.disable(session, user)
    session.execute(delete(Address).where(Address.user_id == user.id))
    sessions.revoke_all(session, user.id)
    user.email = f"deleted-{user.id.hex}@deleted.invalid"
    user.name = None
    user.phone = None
    user.password_hash = passwords.hash_password(secrets.token_urlsafe(32))  # unusable
    user.status = "deleted"
    user.deleted_at = utcnow()
    audit.record(session, "user.deleted", subject_id=user.id)
    outbox.add(session, "user.deleted", {"user_id": str(user.id), "former_email": former_email})
    log.info("user deleted", extra={"subject_id": str(user.id)})


def create_admin(session: Session, email: str, password: str, name: str | None) -> dict[str, Any]:
    """Makes ``email`` an administrator: creates the account, or promotes an existing one
    (its password is left alone). Running it twice changes nothing."""
    email = normalize_email(email)
    user = session.scalars(select(User).where(User.email == email)).first()
    if user is None:
        domain.check_password_policy(password, email)
        user = User(
            id=uuid.uuid4(),
            email=email,
            password_hash=passwords.hash_password(password),
            name=name,
            roles=[roles.CUSTOMER, roles.ADMIN],
            terms_accepted_at=utcnow(),
            email_verified_at=utcnow(),  # the operator vouches for it
            status="active",
        )
        try:
            with session.begin_nested():
                session.add(user)
                session.flush()
        except IntegrityError:
            raise Conflict("An account with this email was created meanwhile; retry.") from None
        session.refresh(user)
        outbox.add(
            session, "user.registered", {"user_id": str(user.id), "email": email, "name": name}
        )
    elif roles.ADMIN not in user.roles:
        user.roles = [*user.roles, roles.ADMIN]
        session.flush()
        session.refresh(user)
        outbox.add(
            session, "user.roles_changed", {"user_id": str(user.id), "roles": list(user.roles)}
        )
    return user_to_dict(user)
