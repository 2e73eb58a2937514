"""Second factor: TOTP (RFC 6238) with single-use recovery codes.

Enrolment stores a sealed secret and answers it with an ``otpauth://`` URI; MFA turns on
only when the user proves their authenticator works by sending a first code, and that
answer carries the recovery codes (shown once, stored as SHA-256 digests).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from typing import Any

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from common.db import utcnow
from common.errors import Conflict, InvalidInput
from svc_auth import audit, onetime
from svc_auth.models import RecoveryCode, User, outbox
from svc_auth.sealing import Sealer
from svc_auth.settings import Settings

RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
_RECOVERY_GROUPS = 4
_RECOVERY_GROUP_LENGTH = 4  # 16 characters of 31 symbols: about 79 bits
TOTP_PATTERN = re.compile(r"^[0-9]{6}$")
#: Codes from the previous and next 30-second step are accepted (clock drift).
VALID_WINDOW_STEPS = 1


def totp_issuer() -> str:
    return Settings.current().totp_issuer


def start_enrolment(session: Session, sealer: Sealer, user: User) -> dict[str, Any]:
    """A new secret for the user's authenticator (replacing an unconfirmed one)."""
    if user.totp_enabled_at is not None:
        raise Conflict("Two-factor authentication is already on; turn it off first.")
    secret = pyotp.random_base32()
    user.totp_secret = sealer.seal(secret)
    user.totp_last_step = None
    session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=totp_issuer())
    return {"secret": secret, "otpauth_uri": uri}


def confirm_enrolment(session: Session, sealer: Sealer, user: User, code: str) -> dict[str, Any]:
    """Turns MFA on if ``code`` is right; answers the recovery codes."""
    if user.totp_enabled_at is not None:
        raise Conflict("Two-factor authentication is already on.")
    if user.totp_secret is None:
        raise Conflict("Start the enrolment first (POST /me/mfa/totp).")
    if not check_totp(sealer, user, code):
        raise InvalidInput("code: wrong code; check your authenticator's clock.", {"field": "code"})
    user.totp_enabled_at = utcnow()
    codes = replace_recovery_codes(session, user)
    audit.record(session, "mfa.enabled", subject_id=user.id)
    outbox.add(session, "user.mfa_enabled", {"user_id": str(user.id)})
    return {"recovery_codes": codes}


def disable(session: Session, user: User) -> None:
    if user.totp_enabled_at is None and user.totp_secret is None:
        return
    was_enabled = user.totp_enabled_at is not None
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    if was_enabled:
        audit.record(session, "mfa.disabled", subject_id=user.id)
        outbox.add(session, "user.mfa_disabled", {"user_id": str(user.id)})


def check_totp(sealer: Sealer, user: User, code: str, now: float | None = None) -> bool:
    """True if ``code`` is the user's TOTP for a step near ``now`` that has not been
    used yet; records the step, so a code works once."""
    if user.totp_secret is None or not TOTP_PATTERN.match(code):
        return False
    totp = pyotp.TOTP(sealer.unseal(user.totp_secret))
    current_step = int((time.time() if now is None else now) // totp.interval)
    for step in range(current_step - VALID_WINDOW_STEPS, current_step + VALID_WINDOW_STEPS + 1):
        if hmac.compare_digest(totp.at(step * totp.interval), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False  # replayed
            user.totp_last_step = step
            return True
    return False


def normalize_recovery_code(code: str) -> str:
    return "".join(character for character in code.lower() if character.isalnum())


def new_recovery_code() -> str:
    groups = (
        "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP_LENGTH))
        for _ in range(_RECOVERY_GROUPS)
    )
    return "-".join(groups)


def replace_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=onetime.digest(normalize_recovery_code(code)))
        for code in codes
    )
    session.flush()
    return codes


def use_recovery_code(session: Session, user: User, code: str) -> bool:
    """True (and the code is spent) if ``code`` is one of the user's unused codes."""
    normalized = normalize_recovery_code(code)
    if len(normalized) != _RECOVERY_GROUPS * _RECOVERY_GROUP_LENGTH:
        return False
    row = session.scalars(
        select(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == onetime.digest(normalized),
            RecoveryCode.used_at.is_(None),
        )
        .with_for_update()
    ).first()
    if row is None:
        return False
    row.used_at = utcnow()
    return True


def check_second_factor(session: Session, sealer: Sealer, user: User, code: str) -> bool:
    """A TOTP code or a recovery code."""
    if TOTP_PATTERN.match(code):
        return check_totp(sealer, user, code)
    return use_recovery_code(session, user, code)


def remaining_recovery_codes(session: Session, user: User) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.code_hash).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def regenerate_recovery_codes(session: Session, user: User) -> dict[str, Any]:
    if user.totp_enabled_at is None:
        raise Conflict("Two-factor authentication is off; there are no recovery codes.")
    codes = replace_recovery_codes(session, user)
    audit.record(session, "mfa.recovery_codes_regenerated", subject_id=user.id)
    return {"recovery_codes": codes}
