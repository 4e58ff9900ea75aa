"""Events record the device that set them, and can be read by time.

`device` is the name the device gave itself when it connected (or in the body of an HTTP update),
null when it gave none. The index serves the statistics and export, which read one user's events
by time range.

Revision ID: 0005_event_device
Revises: 0004_token_version
Create Date: 2026-12-03 18:30:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0005_event_device'
down_revision = '0004_token_version'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('emotion_events') as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_emotion_events_user_id_created_at', ['user_id', 'created_at'])


def downgrade():
    with op.batch_alter_table('emotion_events') as batch_op:
        batch_op.drop_index('ix_emotion_events_user_id_created_at')
        batch_op.drop_column('device')
