"""Extension singletons, created unbound here and bound to an app in `create_app`."""
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Named constraints keep migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# expire_on_commit=False: handlers commit early (to hand the connection back to the pool before slow
# work such as password hashing) and still read the committed objects afterwards.
db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING), session_options={"expire_on_commit": False})
migrate = Migrate()
jwt = JWTManager()
sock = Sock()
# Limits are declared per route (see ratelimit.py); storage and options come from the app's config.
limiter = Limiter(key_func=get_remote_address)


def read_connection():
    """A pooled connection for a quick read outside the ORM session, without a transaction around it.

    Each statement sees what is committed when it runs; PostgreSQL is spared the BEGIN and the ROLLBACK
    (two round trips) that would wrap a one-query transaction.
    """
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
