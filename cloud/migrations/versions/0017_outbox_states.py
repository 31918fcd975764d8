"""outbox states: notification rows speak the job toolkit's states; what happened is their outcome

notifications.status becomes cloud.jobs.JobState (pending/running/done/dead) like analysis_jobs,
and the new notifications.outcome says what happened to the message for its owner:

    pending -> pending            held    -> pending, held
    sending -> running            sent    -> done, sent
    skipped -> done, skipped      failed  -> dead, failed
    unknown -> dead, unknown

A check constraint (ck_notifications_outcome) allows only these pairs. The downgrade gives the
old words back.

Revision ID: 0017_outbox_states
Revises: 0016_live
Create Date: 2026-11-30 05:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0017_outbox_states'
down_revision = '0016_live'
branch_labels = None
depends_on = None

# old word: (status, outcome)
_WORDS = {
    'pending': ('pending', None),
    'held': ('pending', 'held'),
    'sending': ('running', None),
    'sent': ('done', 'sent'),
    'skipped': ('done', 'skipped'),
    'failed': ('dead', 'failed'),
    'unknown': ('dead', 'unknown'),
}
# COALESCE: a comparison with NULL is unknown, and a CHECK lets an unknown pass.
_ALLOWED = " OR ".join(
    f"(status = '{status}' AND COALESCE(outcome, '') = '{outcome or ''}')" for status, outcome in _WORDS.values()
)


def upgrade() -> None:
    with op.batch_alter_table('notifications') as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=20), nullable=True))
        batch_op.alter_column('status', existing_type=sa.String(length=10), type_=sa.String(length=20),
                              existing_nullable=False)
    for old, (status, outcome) in _WORDS.items():
        op.execute(sa.text("UPDATE notifications SET status = :status, outcome = :outcome WHERE status = :old")
                   .bindparams(old=old, status=status, outcome=outcome))
    with op.batch_alter_table('notifications') as batch_op:
        batch_op.create_check_constraint(op.f('ck_notifications_outcome'), _ALLOWED)


def downgrade() -> None:
    with op.batch_alter_table('notifications') as batch_op:
        batch_op.drop_constraint(op.f('ck_notifications_outcome'), type_='check')
    for old, (status, outcome) in _WORDS.items():
        if old == status:
            continue  # pending stays pending; held (pending with an outcome) is matched below
        outcome_is = "outcome IS NULL" if outcome is None else "outcome = :outcome"
        op.execute(sa.text(f"UPDATE notifications SET status = :old WHERE status = :status AND {outcome_is}")
                   .bindparams(old=old, status=status, **({} if outcome is None else {"outcome": outcome})))
    with op.batch_alter_table('notifications') as batch_op:
        batch_op.drop_column('outcome')
        batch_op.alter_column('status', existing_type=sa.String(length=20), type_=sa.String(length=10),
                              existing_nullable=False)
