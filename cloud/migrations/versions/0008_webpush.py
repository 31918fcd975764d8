"""phone alerts: Web Push subscriptions, Apprise targets, send counts

Revision ID: 0008_webpush
Revises: 0006_tokens
Create Date: 2026-11-29 23:20:00
"""

from alembic import op
import sqlalchemy as sa
import cloud.models.base


revision = '0008_webpush'
down_revision = '0006_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webpush_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sa.String(length=2000), nullable=False),
    sa.Column('endpoint_sha256', sa.String(length=64), nullable=False),
    sa.Column('p256dh', sa.String(length=200), nullable=False),
    sa.Column('auth', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_sent_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_webpush_subscriptions_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webpush_subscriptions')),
    sa.UniqueConstraint('endpoint_sha256', name=op.f('uq_webpush_subscriptions_endpoint_sha256'))
    )
    with op.batch_alter_table('webpush_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webpush_subscriptions_user_id'), ['user_id'], unique=False)
    op.create_table('apprise_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('url_encrypted', sa.Text(), nullable=False),
    sa.Column('url_sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_apprise_targets_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apprise_targets')),
    sa.UniqueConstraint('user_id', 'url_sha256', name=op.f('uq_apprise_targets_user_id'))
    )
    with op.batch_alter_table('apprise_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apprise_targets_user_id'), ['user_id'], unique=False)


    op.create_table('send_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('window', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_counts')),
    sa.UniqueConstraint('key', 'window', name=op.f('uq_send_counts_key'))
    )


def downgrade() -> None:
    op.drop_table('send_counts')
    with op.batch_alter_table('apprise_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apprise_targets_user_id'))
    op.drop_table('apprise_targets')
    with op.batch_alter_table('webpush_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webpush_subscriptions_user_id'))
    op.drop_table('webpush_subscriptions')
