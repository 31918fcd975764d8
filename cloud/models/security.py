"""Counters that protect logins (see ``cloud.services.login_limits``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base


class LoginFailureWindow(Base):
    """Login attempts of one account or one client address in one fixed window (an atomic upsert)."""

    __tablename__ = "login_failure_windows"

    # SHA-256 of "account:<email>" or "address:<ip>": people type passwords into the email field.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)  # epoch s // window length
    count: Mapped[int] = mapped_column(Integer, default=0)
