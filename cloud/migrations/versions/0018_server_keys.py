"""server_keys: keys the whole deployment shares (Web Push's VAPID key), sealed under the server secret

Until now each host made its own VAPID key file in its data directory, so replicas disagreed.
The first cloud process to need the key adopts an existing key file, else makes one, and stores it here.

Revision ID: 0018_server_keys
Revises: 0017_outbox_states
Create Date: 2026-11-30 05:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0018_server_keys'
down_revision = '0017_outbox_states'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'server_keys',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('value_sealed', sa.String(length=2000), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('server_keys')
