"""Database models: users, their emotion events, and revoked tokens."""
from datetime import timezone

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .timeutil import isoformat, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    # Lower-cased copy with the unique index: "Alice" and "alice" are one account.
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    # The `seq` of the user's latest event. Incrementing it locks the user's row, which orders the
    # user's concurrent writes: their ids and seqs then grow in commit order.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Tokens carry the version they were issued under; raising it (password change) revokes them all.
    token_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    def to_dict(self):
        """The public view of a user."""
        return {"id": str(self.id), "username": self.username, "created_at": isoformat(self.created_at)}


class EmotionEvent(db.Model):
    __tablename__ = "emotion_events"
    # Every read is "this user's events by id (or seq)": current, history pages, replays, catch-up.
    __table_args__ = (
        Index("ix_emotion_events_user_id_id", "user_id", "id"),
        # Statistics and export read one user's events by time range.
        Index("ix_emotion_events_user_id_created_at", "user_id", "created_at"),
        UniqueConstraint("user_id", "seq", name="uq_emotion_events_user_id_seq"),
        UniqueConstraint("user_id", "client_msg_id", name="uq_emotion_events_user_id_client_msg_id"),
        # Without AUTOINCREMENT SQLite reuses the ids of deleted rows: ids must only ever grow.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    emotion: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    # The device's own clock, as the device sent it (often a local time without an offset).
    client_timestamp: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # 1, 2, 3 ... per user, without gaps: how a device notices it missed one of its user's events.
    seq: Mapped[int] = mapped_column(BigInteger)
    # Chosen by the device; a repeat of it stores nothing new.
    client_msg_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The name the device that set it gave itself (null when it gave none).
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set when the emotion was detected rather than chosen: "detected:text", "detected:face" or
    # "detected:text+face", with the detection's score for it.
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)

    def to_dict(self):
        """The event as pushed to devices and returned over HTTP."""
        return event_payload(self)


def event_payload(row):
    """An event (model instance or Core row of emotion_events) as devices and HTTP clients see it."""
    event = {
        "id": row.id,
        "seq": row.seq,
        "user_id": str(row.user_id),
        "emotion": row.emotion,
        "timestamp": isoformat(row.created_at),
        "client_timestamp": row.client_timestamp,
        "device": row.device,
    }
    if row.client_msg_id is not None:
        event["client_msg_id"] = row.client_msg_id
    # Only on detected emotions, so that every other event keeps the shape clients already know.
    if row.source is not None:
        event["source"] = row.source
        event["confidence"] = row.confidence
    return event


class RevokedToken(db.Model):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_type: Mapped[str] = mapped_column(String(16))
    # Kept until the token would have expired anyway; after that the row can be pruned.
    expires_at: Mapped[object] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class AppState(db.Model):
    """Small named values the service keeps about itself (e.g. how far events were pruned)."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
