"""Account use cases: register, authenticate, look up, create administrators."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from svc_auth import passwords, roles
from svc_auth.models import User, outbox

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "The email or password is wrong."


def normalize_email(raw: str) -> str:
    """The canonical form of an address: syntax checked, lower-cased."""
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise InvalidInput(f"email: {error}", {"field": "email"}) from None


def check_password_policy(password: str, email: str) -> None:
    if password.strip().lower() in {email, email.split("@")[0]}:
        raise InvalidInput("password: must not be your email address.", {"field": "password"})


def user_to_dict(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "roles": list(user.roles),
        "created_at": isoformat(user.created_at),
    }


def register(session: Session, registration: dict[str, Any]) -> dict[str, Any]:
    """Creates a customer account and announces it with ``user.registered``."""
    schemas.validate("Registration", registration)
    email = normalize_email(registration["email"])
    check_password_policy(registration["password"], email)
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=passwords.hash_password(registration["password"]),
        name=registration.get("name"),
        roles=[roles.CUSTOMER],
        terms_accepted_at=utcnow(),
    )
    _insert_user(session, user)
    created = user_to_dict(user)
    outbox.add(
        session, "user.registered", {"user_id": created["id"], "email": email, "name": user.name}
    )
    log.info("user registered", extra={"subject_id": created["id"]})
    return created


def _insert_user(session: Session, user: User) -> None:
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise Conflict("An account with this email already exists.", {"field": "email"}) from None
    session.refresh(user)


def authenticate(session: Session, email: str, password: str) -> User:
    """The user with these credentials, or :class:`Unauthenticated` (same message, same
    work, whether the email or the password was wrong)."""
    try:
        email = normalize_email(email)
    except InvalidInput:
        email = ""
    user = session.scalars(select(User).where(User.email == email)).first() if email else None
    if not passwords.verify_password(user.password_hash if user else None, password):
        log.info("login refused", extra={"subject_id": str(user.id) if user else None})
        raise Unauthenticated(WRONG_CREDENTIALS)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def get_user(session: Session, user_id: str) -> dict[str, Any]:
    user = session.get(User, parse_id(user_id, "user_id"))
    if user is None:
        raise NotFound("No such user.", {"user_id": user_id})
    return user_to_dict(user)


def create_admin(session: Session, email: str, password: str, name: str | None) -> dict[str, Any]:
    """Makes ``email`` an administrator: creates the account, or promotes an existing one
    (its password is left alone). Running it twice changes nothing."""
    email = normalize_email(email)
    user = session.scalars(select(User).where(User.email == email)).first()
    if user is None:
        schemas.validate(
            "Registration", {"email": email, "password": password, "accept_terms": True}
        )
        check_password_policy(password, email)
        user = User(
            id=uuid.uuid4(),
            email=email,
            password_hash=passwords.hash_password(password),
            name=name,
            roles=[roles.CUSTOMER, roles.ADMIN],
            terms_accepted_at=utcnow(),
        )
        _insert_user(session, user)
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
