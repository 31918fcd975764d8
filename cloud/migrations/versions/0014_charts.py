"""telemetry: one index on (device_id, received_at) for a device's history over a time range

Replaces the index on device_id alone (the composite one's leading column serves those lookups).

Revision ID: 0014_charts
Revises: 0013_ota
Create Date: 2026-11-30 02:30:00
"""

from alembic import op


revision = "0014_charts"
down_revision = "0013_ota"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_device_received", ["device_id", "received_at"], unique=False)
        batch_op.drop_index(batch_op.f("ix_telemetry_device_id"))


def downgrade() -> None:
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_telemetry_device_id"), ["device_id"], unique=False)
        batch_op.drop_index("ix_telemetry_device_received")
