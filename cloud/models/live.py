"""The live dashboard's event log and the tickets that open its stream (``cloud.live``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base, UTCDateTime


class LiveEvent(Base):
    """One event on a user's live stream; its id is the stream's event id (``Last-Event-ID``).

    Written in the producer's transaction, so every replica can replay it; pruned by age.
    """

    __tablename__ = "live_events"
    __table_args__ = (Index("ix_live_events_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    device_serial: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class StreamTicket(Base):
    """A single-use, short-lived ticket that opens one event stream (only its SHA-256 is stored).

    A browser's EventSource cannot send an Authorization header; the ticket in the stream's URL
    replaces it, so the login token itself never appears in a URL (or an access log)."""

    __tablename__ = "stream_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
