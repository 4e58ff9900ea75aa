"""Event ids never reused on SQLite (AUTOINCREMENT).

SQLite hands out max(rowid)+1, so after the newest events are deleted (pruning) their ids would be given
again, breaking "an id only ever grows" that resuming devices rely on. PostgreSQL sequences never go
back, so there is nothing to do there.

Revision ID: 0003_event_ids_never_reused
Revises: 0002_resume_and_idempotency
Create Date: 2026-11-25 20:20:00

"""
from alembic import op


revision = '0003_event_ids_never_reused'
down_revision = '0002_resume_and_idempotency'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('emotion_events', recreate='always', table_kwargs={'sqlite_autoincrement': True}):
        pass


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('emotion_events', recreate='always', table_kwargs={'sqlite_autoincrement': False}):
        pass
