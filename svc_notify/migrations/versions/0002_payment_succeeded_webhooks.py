"""webhook endpoints subscribed to payment.authorized get payment.succeeded

The type was renamed in docs/decisions/0017 and never published under the old name;
endpoints that chose it were waiting for an event that never came (docs/decisions/0061).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE webhook_endpoints "
        "SET event_types = array_replace(event_types, 'payment.authorized', 'payment.succeeded') "
        "WHERE 'payment.authorized' = ANY(event_types)"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE webhook_endpoints "
        "SET event_types = array_replace(event_types, 'payment.succeeded', 'payment.authorized') "
        "WHERE 'payment.succeeded' = ANY(event_types)"
    )
