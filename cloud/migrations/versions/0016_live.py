"""live: the dashboard's event log and stream tickets; analysis jobs speak the job toolkit's states

analysis_jobs.status: queued -> pending, failed -> dead (running and done unchanged), so both
queues share one lifecycle (cloud.jobs). Analyses keep their own words (queued/running/done/failed).

Revision ID: 0016_live
Revises: 0015_roles
Create Date: 2026-11-30 02:50:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0016_live'
down_revision = '0015_roles'
branch_labels = None
depends_on = None

_RENAMES = (("queued", "pending"), ("failed", "dead"))


def upgrade() -> None:
    op.create_table(
        'live_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('device_serial', sa.String(length=64), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_live_events_user_id_id', 'live_events', ['user_id', 'id'], unique=False)
    op.create_index(op.f('ix_live_events_created_at'), 'live_events', ['created_at'], unique=False)
    op.create_table(
        'stream_tickets',
        sa.Column('ticket_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('ticket_hash'),
    )
    op.create_index(op.f('ix_stream_tickets_user_id'), 'stream_tickets', ['user_id'], unique=False)
    op.create_index(op.f('ix_stream_tickets_expires_at'), 'stream_tickets', ['expires_at'], unique=False)
    for old, new in _RENAMES:
        op.execute(sa.text("UPDATE analysis_jobs SET status = :new WHERE status = :old").bindparams(old=old, new=new))


def downgrade() -> None:
    for old, new in _RENAMES:
        op.execute(sa.text("UPDATE analysis_jobs SET status = :old WHERE status = :new").bindparams(old=old, new=new))
    op.drop_index(op.f('ix_stream_tickets_expires_at'), table_name='stream_tickets')
    op.drop_index(op.f('ix_stream_tickets_user_id'), table_name='stream_tickets')
    op.drop_table('stream_tickets')
    op.drop_index(op.f('ix_live_events_created_at'), table_name='live_events')
    op.drop_index('ix_live_events_user_id_id', table_name='live_events')
    op.drop_table('live_events')
