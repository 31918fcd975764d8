"""hardening: login failure windows

Revision ID: 0005_hardening
Revises: 0003_notify
Create Date: 2026-11-29 23:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_hardening'
down_revision = '0004_calibration'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_failure_windows',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('window', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key_hash', 'window', name=op.f('pk_login_failure_windows'))
    )
    with op.batch_alter_table('login_failure_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_failure_windows_window'), ['window'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_failure_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_failure_windows_window'))

    op.drop_table('login_failure_windows')
