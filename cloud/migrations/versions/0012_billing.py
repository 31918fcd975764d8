"""billing: Stripe ids, status and period on subscriptions; the audit of tier changes; each Stripe event once

Revision ID: 0012_billing
Revises: 0011_settings
Create Date: 2026-11-30 02:25:23.690491
"""

from alembic import op
import sqlalchemy as sa
import cloud.models.base


revision = '0012_billing'
down_revision = '0011_settings'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=30), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_stripe_events_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_stripe_events_event_id'))
    )
    op.create_table('tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('stripe_event_id', sa.String(length=255), nullable=True),
    sa.Column('old_tier', sa.Enum('free', 'premium', name='tier', native_enum=False, length=20), nullable=True),
    sa.Column('new_tier', sa.Enum('free', 'premium', name='tier', native_enum=False, length=20), nullable=False),
    sa.Column('old_status', sa.String(length=30), nullable=True),
    sa.Column('new_status', sa.String(length=30), nullable=True),
    sa.Column('ends_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_tier_changes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tier_changes_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('stripe_customer_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('stripe_subscription_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('current_period_end', cloud.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_at_period_end', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('grace_until', cloud.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stripe_synced_at', cloud.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_subscriptions_stripe_subscription_id'), ['stripe_subscription_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_subscriptions_stripe_customer_id'), ['stripe_customer_id'])



def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_subscriptions_stripe_customer_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_subscriptions_stripe_subscription_id'))
        batch_op.drop_column('stripe_synced_at')
        batch_op.drop_column('grace_until')
        batch_op.drop_column('cancel_at_period_end')
        batch_op.drop_column('current_period_end')
        batch_op.drop_column('stripe_subscription_id')
        batch_op.drop_column('stripe_customer_id')
        batch_op.drop_column('status')

    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tier_changes_user_id'))

    op.drop_table('tier_changes')
    op.drop_table('stripe_events')
