"""Integration API keys with their rate windows, and the counters that protect logins
(see ``cloud.services.api_keys`` and ``cloud.services.login_limits``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base, UTCDateTime


class LoginFailureWindow(Base):
    """Login attempts of one account or one client address in one fixed window (an atomic upsert)."""

    __tablename__ = "login_failure_windows"

    # SHA-256 of "account:<email>" or "address:<ip>": people type passwords into the email field.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)  # epoch s // window length
    count: Mapped[int] = mapped_column(Integer, default=0)


class ApiKey(Base):
    """An integration key (``mck_…``); only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a key in a list
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(10))  # read | trigger
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiRateWindow(Base):
    """Requests of one key in one fixed one-minute window (counted by an atomic upsert)."""

    __tablename__ = "api_rate_windows"
    __table_args__ = (UniqueConstraint("api_key_id", "window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    window: Mapped[int] = mapped_column(BigInteger)  # epoch minute
    count: Mapped[int] = mapped_column(Integer, default=0)


class ServerKey(Base):
    """A key the whole deployment shares (e.g. Web Push's VAPID key): made once, read by every replica.

    Sealed under the server secret (``cloud.sealed``), so a database dump alone does not give it away.
    """

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value_sealed: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
