"""roles: the installer role, the owner's read-only grant to the installer, gateways' reported status

Revision ID: 0015_roles
Revises: 0014_charts
Create Date: 2026-11-30 02:40:00
"""

from alembic import op
import sqlalchemy as sa
import cloud.models.base


revision = "0015_roles"
down_revision = "0014_charts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "role",
                sa.Enum("homeowner", "installer", name="role", native_enum=False, length=20),
                server_default="homeowner",
                nullable=False,
            )
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("installer_access", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reported_at", cloud.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("backlog", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("backlog_oldest_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("held", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("dead_letters", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("broker_connected", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        for column in ("broker_connected", "dead_letters", "held", "backlog_oldest_s", "backlog", "reported_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("installer_access")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("role")
