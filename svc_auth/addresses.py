"""A customer's address book: several addresses, at most one default.

Every lookup is scoped to the owner: another customer's address id is simply not found.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, parse_id
from common.errors import Conflict, NotFound
from common.pagination import page
from svc_auth.accounts import find_user
from svc_auth.models import Address

MAX_ADDRESSES = 20
FIELDS = (
    "label",
    "recipient",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "country",
    "phone",
)


def address_to_dict(address: Address) -> dict[str, Any]:
    return {
        "id": str(address.id),
        **{field: getattr(address, field) for field in FIELDS},
        "is_default": address.is_default,
        "created_at": isoformat(address.created_at),
        "updated_at": isoformat(address.updated_at),
    }


def list_addresses(session: Session, user_id: str) -> dict[str, Any]:
    """All of them (there are at most ``MAX_ADDRESSES``), default first, then newest."""
    owner = find_user(session, user_id)
    rows = session.scalars(
        select(Address)
        .where(Address.user_id == owner.id)
        .order_by(Address.is_default.desc(), Address.created_at.desc(), Address.id)
    ).all()
    return page([address_to_dict(address) for address in rows], None)


def _owned(session: Session, user_id: str, address_id: str, *, for_update: bool = False) -> Address:
    query = select(Address).where(
        Address.id == parse_id(address_id, "address_id"),
        Address.user_id == parse_id(user_id, "user_id"),
    )
    address = session.scalars(query.with_for_update() if for_update else query).first()
    if address is None:
        raise NotFound("No such address.", {"address_id": address_id})
    return address


def get_address(session: Session, user_id: str, address_id: str) -> dict[str, Any]:
    return address_to_dict(_owned(session, user_id, address_id))


def shipping_details(session: Session, user_id: str, address_id: str) -> dict[str, Any]:
    """What a checkout needs from the address book in one answer: the address, and how
    to reach the customer about the order (carried by the order's events, so the
    notifications service need not ask again: docs/decisions/0085)."""
    owner = find_user(session, user_id)
    return {
        "address": address_to_dict(_owned(session, user_id, address_id)),
        "contact": {"email": owner.email, "name": owner.name, "phone": owner.phone},
    }


def add_address(session: Session, user_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    schemas.validate("AddressCreate", fields)
    owner = find_user(session, user_id, for_update=True)  # serialises a user's additions
    count = session.scalar(select(func.count()).where(Address.user_id == owner.id))
    if count >= MAX_ADDRESSES:
        raise Conflict(f"An address book holds at most {MAX_ADDRESSES} addresses.")
    make_default = bool(fields.get("is_default")) or count == 0
    if make_default:
        _clear_default(session, owner.id)
    address = Address(
        id=uuid.uuid4(),
        user_id=owner.id,
        is_default=make_default,
        **{field: fields.get(field) for field in FIELDS},
    )
    session.add(address)
    session.flush()
    session.refresh(address)
    return address_to_dict(address)


def update_address(
    session: Session, user_id: str, address_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """JSON merge patch; ``is_default: true`` makes it the default (``false`` is refused
    for the default: choose another default instead)."""
    schemas.validate("AddressUpdate", changes)
    find_user(session, user_id, for_update=True)
    address = _owned(session, user_id, address_id, for_update=True)
    for field in FIELDS:
        if field in changes:
            setattr(address, field, changes[field])
    if changes.get("is_default") is True and not address.is_default:
        _clear_default(session, address.user_id)
        address.is_default = True
    elif changes.get("is_default") is False and address.is_default:
        raise Conflict("Make another address the default instead.", {"field": "is_default"})
    session.flush()
    session.refresh(address)
    return address_to_dict(address)


def delete_address(session: Session, user_id: str, address_id: str) -> None:
    """Deleting the default makes the newest remaining address the default."""
    find_user(session, user_id, for_update=True)
    address = _owned(session, user_id, address_id, for_update=True)
    was_default = address.is_default
    session.delete(address)
    session.flush()
    if was_default:
        successor = session.scalars(
            select(Address)
            .where(Address.user_id == address.user_id)
            .order_by(Address.created_at.desc(), Address.id)
            .limit(1)
        ).first()
        if successor is not None:
            successor.is_default = True
            session.flush()


def _clear_default(session: Session, user_id: uuid.UUID) -> None:
    session.execute(
        update(Address)
        .where(Address.user_id == user_id, Address.is_default)
        .values(is_default=False)
    )
    session.flush()
