"""Per-user event sequence, client message ids, app state.

Revision ID: 0002_resume_and_idempotency
Revises: 0001_initial
Create Date: 2026-11-25 20:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002_resume_and_idempotency'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=False))

    with op.batch_alter_table('emotion_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('client_msg_id', sa.String(length=64), nullable=True))

    # Number the events stored so far, per user in id order, and remember each user's last number.
    op.execute(
        "UPDATE emotion_events SET seq = (SELECT count(*) FROM emotion_events AS earlier "
        "WHERE earlier.user_id = emotion_events.user_id AND earlier.id <= emotion_events.id)"
    )
    op.execute(
        "UPDATE users SET last_seq = COALESCE((SELECT max(seq) FROM emotion_events "
        "WHERE emotion_events.user_id = users.id), 0)"
    )

    with op.batch_alter_table('emotion_events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint('uq_emotion_events_user_id_seq', ['user_id', 'seq'])
        batch_op.create_unique_constraint('uq_emotion_events_user_id_client_msg_id', ['user_id', 'client_msg_id'])

    op.create_table('app_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_app_state'))
    )


def downgrade():
    op.drop_table('app_state')
    with op.batch_alter_table('emotion_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_emotion_events_user_id_client_msg_id', type_='unique')
        batch_op.drop_constraint('uq_emotion_events_user_id_seq', type_='unique')
        batch_op.drop_column('client_msg_id')
        batch_op.drop_column('seq')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('last_seq')
