"""devices in the field: captures whose time is an estimate (the device's clock was unset)

Revision ID: 0009_field
Revises: 0006_tokens
Create Date: 2026-11-29 23:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009_field'
down_revision = '0008_webpush'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taken_at_uncertain', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.drop_column('taken_at_uncertain')
