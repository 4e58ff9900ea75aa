"""A token version per user: changing the password revokes every token issued before.

Tokens carry the version they were issued under (claim `ver`); a token whose version is older than the
user's is refused. Existing tokens carry none and count as version 0, the starting value.

Revision ID: 0004_token_version
Revises: 0003_event_ids_never_reused
Create Date: 2026-11-25 22:40:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0004_token_version'
down_revision = '0003_event_ids_never_reused'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('token_version', sa.BigInteger(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('token_version')
