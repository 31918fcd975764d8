"""firmware updates: signed releases, rollouts and each device's update state

Revision ID: 0013_ota
Revises: 0012_billing
Create Date: 2026-11-30 02:40:00
"""

from alembic import op
import sqlalchemy as sa

import cloud.models.base


revision = '0013_ota'
down_revision = '0012_billing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'firmware_releases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.String(length=40), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('bundle', sa.LargeBinary(), nullable=False),
        sa.Column('uploaded_by', sa.Integer(), nullable=True),
        sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], name=op.f('fk_firmware_releases_uploaded_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_releases')),
        sa.UniqueConstraint('version', name=op.f('uq_firmware_releases_version')),
    )
    op.create_table(
        'firmware_rollouts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('status', sa.Enum('active', 'halted', 'cancelled', name='rolloutstatus', native_enum=False,
                                    length=20), nullable=False),
        sa.Column('first_wave', sa.Integer(), nullable=False),
        sa.Column('max_failure_rate', sa.Float(), nullable=False),
        sa.Column('halted_reason', sa.String(length=200), nullable=True),
        sa.Column('created_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_firmware_rollouts_created_by_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['release_id'], ['firmware_releases.id'],
                                name=op.f('fk_firmware_rollouts_release_id_firmware_releases'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_rollouts')),
    )
    with op.batch_alter_table('firmware_rollouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_firmware_rollouts_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_firmware_rollouts_release_id'), ['release_id'], unique=False)
    op.create_table(
        'firmware_rollout_devices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rollout_id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.Column('wave', sa.Integer(), nullable=False),
        sa.Column('state', sa.Enum('waiting', 'pending', 'downloading', 'staged', 'installed', 'rolled_back',
                                   'refused', name='updatestate', native_enum=False, length=20), nullable=False),
        sa.Column('progress', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('updated_at', cloud.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'],
                                name=op.f('fk_firmware_rollout_devices_device_id_devices'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['rollout_id'], ['firmware_rollouts.id'],
                                name=op.f('fk_firmware_rollout_devices_rollout_id_firmware_rollouts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_rollout_devices')),
        sa.UniqueConstraint('rollout_id', 'device_id', name=op.f('uq_firmware_rollout_devices_rollout_id')),
    )
    with op.batch_alter_table('firmware_rollout_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_firmware_rollout_devices_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_firmware_rollout_devices_rollout_id'), ['rollout_id'], unique=False)


def downgrade() -> None:
    op.drop_table('firmware_rollout_devices')
    op.drop_table('firmware_rollouts')
    op.drop_table('firmware_releases')
