"""no loss, no leak: image file lock rows, recipient confirmations

Revision ID: 0006_tokens
Revises: 0003_notify
Create Date: 2026-11-29 22:40:00
"""

from alembic import op
import sqlalchemy as sa
import cloud.models.base


revision = '0006_tokens'
down_revision = '0003_notify'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('image_files',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_image_files'))
    )


def downgrade() -> None:
    op.drop_table('image_files')
