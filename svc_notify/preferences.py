"""Each customer's channels for order and payment news."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, parse_id
from svc_notify.models import Preference

#: Until a customer says otherwise: email yes, SMS only after an explicit opt-in.
DEFAULTS = {"email": True, "sms": False}


def get(session: Session, user_id: str) -> dict[str, Any]:
    row = session.get(Preference, parse_id(user_id, "user_id"))
    if row is None:
        return {**DEFAULTS, "updated_at": None}
    return {"email": row.email, "sms": row.sms, "updated_at": isoformat(row.updated_at)}


def put(session: Session, user_id: str, chosen: dict[str, Any]) -> dict[str, Any]:
    schemas.validate("NotificationPreferencesUpdate", chosen)
    values = {"email": chosen["email"], "sms": chosen["sms"]}
    statement = insert(Preference).values(user_id=parse_id(user_id, "user_id"), **values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Preference.user_id],
            set_={**values, "updated_at": statement.excluded.updated_at},
        )
    )
    session.commit()
    return get(session, user_id)
