"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from emotion_app.extensions import db

TABLES = {"users", "emotion_events", "revoked_tokens", "app_state", "alembic_version"}


def _diff(app):
    with app.app_context(), db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def test_migrated_database_matches_the_models(app):
    # The `database_url` fixture applied every migration to an empty database.
    with app.app_context():
        assert set(sa.inspect(db.engine).get_table_names()) == TABLES
    assert _diff(app) == []


def test_downgrade_and_upgrade_again(app):
    with app.app_context():
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) == {"alembic_version"}
        upgrade()
        assert set(sa.inspect(db.engine).get_table_names()) == TABLES
    assert _diff(app) == []
