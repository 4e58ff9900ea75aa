"""Events record where a detected emotion came from, and how sure the detection was.

`source` is null for an emotion a person chose, else `detected:text`, `detected:face` or
`detected:text+face`; `confidence` is the detection's score for the stored emotion (0-1).

Revision ID: 0006_event_source
Revises: 0005_event_device
Create Date: 2027-01-14 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0006_event_source'
down_revision = '0005_event_device'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('emotion_events') as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table('emotion_events') as batch_op:
        batch_op.drop_column('confidence')
        batch_op.drop_column('source')
