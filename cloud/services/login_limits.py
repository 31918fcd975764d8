"""Login attempt limits, per account and per client address, counted in the database.

Each attempt reserves one unit on both counters *before* the password is checked: an atomic
upsert in its own short transaction, so replicas share the count and concurrent guesses
cannot slip past the limit while argon2 runs. A successful login gives its reservation back
and clears the account's count, so what stays counted is failures. Over a limit, the answer
is 429 with ``Retry-After`` (the end of the fixed window) and no argon2 work at all.

Why both counters: the account limit stops guessing one password from many addresses; the
address limit stops one address trying a common password on many accounts. The price of an
account limit is that anyone can lock an account for one window (``login_window_s``): a
short, self-ending lock is what a careful operator of a home-security product prefers to an
unbounded guess rate. Behind a reverse proxy, run uvicorn with ``--forwarded-allow-ips`` so
the client address is the caller's, not the proxy's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.db import upsert
from cloud.errors import RateLimited
from cloud.models import LoginFailureWindow


@dataclass(frozen=True)
class Reservation:
    account_key: str
    address_key: str
    window: int


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def reserve(ctx: AppContext, *, email: str, address: str) -> Reservation:
    """Count one attempt for ``email`` and ``address``, or raise ``RateLimited`` when either is over."""
    settings = ctx.settings
    now = ctx.clock.now().timestamp()
    window = int(now) // settings.login_window_s
    reservation = Reservation(_key("account", email.strip().lower()), _key("address", address), window)
    with ctx.sessions() as session:
        account = _count(session, reservation.account_key, window)
        by_address = _count(session, reservation.address_key, window)
        session.commit()
    if account > settings.login_failures_per_account or by_address > settings.login_failures_per_address:
        retry_after = max(1, (window + 1) * settings.login_window_s - int(now))
        raise RateLimited("too many failed logins; try again later", retry_after=retry_after)
    return reservation


def succeeded(ctx: AppContext, reservation: Reservation) -> None:
    """The password was right: give the address its unit back and clear the account's failures."""
    with ctx.sessions() as session:
        session.execute(delete(LoginFailureWindow).where(LoginFailureWindow.key_hash == reservation.account_key))
        _give_back(session, reservation.address_key, reservation.window)
        session.commit()


def not_checked(ctx: AppContext, reservation: Reservation) -> None:
    """The password could not be checked (the server was busy): the attempt does not count."""
    with ctx.sessions() as session:
        _give_back(session, reservation.account_key, reservation.window)
        _give_back(session, reservation.address_key, reservation.window)
        session.commit()


def _give_back(session: Session, key: str, window: int) -> None:
    session.execute(
        update(LoginFailureWindow)
        .where(LoginFailureWindow.key_hash == key, LoginFailureWindow.window == window, LoginFailureWindow.count > 0)
        .values(count=LoginFailureWindow.count - 1)
    )


def _count(session: Session, key: str, window: int) -> int:
    stmt = (
        upsert(session, LoginFailureWindow)
        .values(key_hash=key, window=window, count=1)
        .on_conflict_do_update(
            index_elements=[LoginFailureWindow.key_hash, LoginFailureWindow.window],
            set_={"count": LoginFailureWindow.count + 1},
        )
        .returning(LoginFailureWindow.count)
    )
    used = session.execute(stmt).scalar_one()
    if used == 1:  # the first attempt of a key in a new window: drop every finished window
        session.execute(delete(LoginFailureWindow).where(LoginFailureWindow.window < window))
    return used
