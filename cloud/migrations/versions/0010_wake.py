"""captures: the wake reason the device gives (a door wake is stronger evidence of a delivery)

Revision ID: 0010_wake
Revises: 0009_field
Create Date: 2026-11-29 23:58:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0010_wake'
down_revision = '0009_field'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wake_reason', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.drop_column('wake_reason')
