"""no loss, no leak: image file lock rows, recipient confirmations

Revision ID: 0006_tokens
Revises: 0003_notify
Create Date: 2026-11-29 22:40:00
"""

from alembic import op
import sqlalchemy as sa
import cloud.models.base


revision = '0006_tokens'
down_revision = '0005_hardening'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('image_files',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_image_files'))
    )
    op.create_table('recipient_confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=254), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=True),
    sa.Column('sent_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('confirmed_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recipient_confirmations_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recipient_confirmations')),
    sa.UniqueConstraint('user_id', 'channel', 'address', name=op.f('uq_recipient_confirmations_user_id'))
    )
    with op.batch_alter_table('recipient_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recipient_confirmations_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recipient_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recipient_confirmations_user_id'))
    op.drop_table('recipient_confirmations')
    op.drop_table('image_files')
