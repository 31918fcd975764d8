"""devices: remote settings, desired (with a version) and reported (the version in effect, a refusal)

Revision ID: 0011_settings
Revises: 0010_wake
Create Date: 2026-11-30 00:25:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0011_settings'
down_revision = '0010_wake'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settings_desired', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('settings_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('settings_applied_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('settings_error', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('settings_error')
        batch_op.drop_column('settings_applied_version')
        batch_op.drop_column('settings_version')
        batch_op.drop_column('settings_desired')
