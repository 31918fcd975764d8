"""Gateways as their owner sees them: registering one (its token), how to start it, how each one is doing.

The setup text is made here once, for the dashboard and for `mailcam provision gateway` alike:
the exact `mailcam gateway` command line, and for a box that should keep it running, an
environment file (the token lives only there, chmod 600) plus the systemd unit that reads it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cloud.models import Gateway, User
from cloud.security import hash_token, new_token

TOKEN_PREFIX = "mcg"


def create_gateway(session: Session, *, owner: User, name: str, now: datetime) -> tuple[Gateway, str]:
    token = new_token(TOKEN_PREFIX)
    gateway = Gateway(owner_id=owner.id, name=name, token_hash=hash_token(token), created_at=now)
    session.add(gateway)
    session.flush()
    return gateway, token


def rotate_gateway_token(session: Session, gateway: Gateway) -> str:
    token = new_token(TOKEN_PREFIX)
    gateway.token_hash = hash_token(token)
    session.flush()
    return token


def gateways_of(session: Session, user: User) -> list[Gateway]:
    return list(session.scalars(select(Gateway).where(Gateway.owner_id == user.id).order_by(Gateway.id)))


def is_gateway_token(token: str) -> bool:
    """Gateway tokens say so (``mcg_…``): a caller's token is looked up in one table, not two."""
    return token.startswith(TOKEN_PREFIX + "_")


def gateway_for_token(session: Session, token: str) -> Gateway | None:
    return session.scalar(_BY_TOKEN, {"token_hash": hash_token(token)})


# A gateway calls once per wake of each of its mailboxes (two items a wake, ten wakes a second for a
# hundred boxes); its owner sees when it was last heard from to the minute, and "offline" after minutes.
SEEN_RESOLUTION = timedelta(seconds=1)


def mark_seen(session: Session, gateway: Gateway, now: datetime) -> None:
    """The gateway was heard from at ``now``: one UPDATE, rather than the ORM's flush of the changed row,
    and none if ``gateway`` (as its token's lookup read it, or as marked since) was seen less than
    ``SEEN_RESOLUTION`` before. ``gateway`` is brought in line, not marked changed."""
    seen = gateway.last_seen_at
    if seen is not None and timedelta(0) <= now - seen < SEEN_RESOLUTION:
        return
    session.connection().execute(_MARK_SEEN, {"gateway_id": gateway.id, "now": now})
    set_committed_value(gateway, "last_seen_at", now)


# Built once: building and keying the clauses cost more than running them (a call per device request).
_BY_TOKEN = select(Gateway).where(Gateway.token_hash == bindparam("token_hash"))
_gateways = Gateway.__table__.c
_MARK_SEEN = (
    update(Gateway.__table__)
    .where(_gateways.id == bindparam("gateway_id"))
    .values(last_seen_at=bindparam("now", type_=_gateways.last_seen_at.type))
)


ENV_FILE = "/etc/mailcam/gateway.env"
UNIT_FILE = "/etc/systemd/system/mailcam-gateway.service"


@dataclass(frozen=True)
class Setup:
    command: str
    env_file: str
    systemd_unit: str


def setup(cloud_url: str, token: str) -> Setup:
    """What to type on the gateway box (the token appears in ``command`` and ``env_file`` only)."""
    url = cloud_url.rstrip("/")
    command = f"MAILCAM_GATEWAY_CLOUD_URL={shlex.quote(url)} MAILCAM_GATEWAY_TOKEN={shlex.quote(token)} mailcam gateway"
    env_file = (
        f"# {ENV_FILE} (chmod 600: it holds the gateway's token)\n"
        f"MAILCAM_GATEWAY_CLOUD_URL={url}\n"
        f"MAILCAM_GATEWAY_TOKEN={token}\n"
        "MAILCAM_GATEWAY_BROKER_HOST=127.0.0.1\n"
        "MAILCAM_GATEWAY_BROKER_USERNAME=mailcam-gateway\n"
        "MAILCAM_GATEWAY_BROKER_PASSWORD=<the broker password from `mailcam provision mosquitto-user`>\n"
    )
    unit = (
        f"# {UNIT_FILE}, then: sudo systemctl enable --now mailcam-gateway\n"
        "[Unit]\n"
        "Description=mailcam edge gateway\n"
        "Wants=network-online.target mosquitto.service\n"
        "After=network-online.target mosquitto.service\n"
        "\n"
        "[Service]\n"
        f"EnvironmentFile={ENV_FILE}\n"
        "Environment=MAILCAM_GATEWAY_DATA_DIR=/var/lib/mailcam-gateway\n"
        "# the Python that has mailcam installed (the lean entry point: `python -m gateway`)\n"
        "ExecStart=/opt/mailcam/.venv/bin/python -m gateway\n"
        "Environment=MALLOC_ARENA_MAX=2\n"
        "DynamicUser=true\n"
        "StateDirectory=mailcam-gateway\n"
        "Restart=always\n"
        "RestartSec=3\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=30\n"
        "MemoryMax=160M\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return Setup(command=command, env_file=env_file, systemd_unit=unit)


def state(gateway: Gateway, now: datetime, offline_after_s: float) -> str:
    """never_seen | online | offline: a running gateway asks the cloud at least every ~25 s."""
    if gateway.last_seen_at is None:
        return "never_seen"
    return "online" if now - gateway.last_seen_at <= timedelta(seconds=offline_after_s) else "offline"
