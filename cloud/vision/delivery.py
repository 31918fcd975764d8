"""The mailbox as a state, not a stream of labels: one alert per delivery.

    empty ──mail seen──► mail ──more mail on top──► mail   (alert "arrived", then "more")
      ▲                   │  └─same mail again──────► mail   (silence: still there)
      └──────collected────┘                                 (event "collected", opt-in notice)

Frames are evidence; only a confident verdict on a good photo moves the state, and a photo taken
because the door opened needs less confidence than one taken on a timer. "More" needs
something new since the previous photo that is also not part of the empty box (pixels, when the
device is calibrated), or, from a model without a reference, higher counts. Re-analyses never
move the state: the delivery they would announce was announced (or not) by the first look.

``transition`` is the pure rule; ``apply`` runs it in the job's transaction, guarded so that only
a frame newer than the last one applied can change the state (two workers finishing out of order
cannot announce one delivery twice or move the state backwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.models import DeliveryEvent, MailboxState

ARRIVED, MORE, COLLECTED = "arrived", "more", "collected"
ARRIVE_MIN_CONFIDENCE = 0.6
COLLECT_MIN_CONFIDENCE = 0.8
MORE_MIN_SHARE = 0.02  # of the frame: new objects where the box was empty (an envelope is ~5 %)
# The door just opened: someone put something in or took it out, so a visible change needs less to
# be believed. A timer wake has no such witness.
DOOR_ARRIVE_MIN_CONFIDENCE = 0.5
DOOR_COLLECT_MIN_CONFIDENCE = 0.7
DOOR_MORE_MIN_SHARE = 0.008


@dataclass(frozen=True)
class Evidence:
    mail: bool | None  # None: no verdict (uncalibrated, too dark, failed)
    confidence: float
    quality: str
    categories: dict[str, int]
    package: bool
    added_share: float | None = None  # new objects since the previous photo; None: not measured
    wake: str | None = None  # why the device woke for this photo: door | timer | power_on | manual


def transition(state: str, evidence: Evidence, previous_categories: dict[str, int] | None) -> str | None:
    """What this frame does to a mailbox in ``state`` (empty | mail): arrived | more | collected | None."""
    if evidence.mail is None or evidence.quality != "ok":
        return None
    door = evidence.wake == "door"
    arrive = DOOR_ARRIVE_MIN_CONFIDENCE if door else ARRIVE_MIN_CONFIDENCE
    if state == "empty":
        return ARRIVED if evidence.mail and evidence.confidence >= arrive else None
    if not evidence.mail:
        return COLLECTED if evidence.confidence >= (DOOR_COLLECT_MIN_CONFIDENCE if door else COLLECT_MIN_CONFIDENCE) \
            else None
    if evidence.confidence < arrive:
        return None
    if evidence.added_share is not None:
        return MORE if evidence.added_share >= more_min_share(evidence.wake) else None
    before = previous_categories or {}
    grew = any(n > int(before.get(name) or 0) for name, n in evidence.categories.items())
    return MORE if grew else None


def more_min_share(wake: str | None) -> float:
    """The share of the frame that new objects must cover for "more mail" after a wake for ``wake``."""
    return DOOR_MORE_MIN_SHARE if wake == "door" else MORE_MIN_SHARE


@dataclass(frozen=True)
class Applied:
    transition: str | None
    state: str
    since: datetime


def current(session: Session, device_id: int) -> MailboxState | None:
    return session.get(MailboxState, device_id)


def ensure_state(session: Session, device_id: int, now: datetime) -> MailboxState:
    """The device's state row, created empty on first use (race-safe: the loser reads the winner's)."""
    row = session.get(MailboxState, device_id, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = MailboxState(device_id=device_id, state="empty", since=now, package_present=False, updated_at=now)
            session.add(row)
    except IntegrityError:
        row = session.get(MailboxState, device_id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


def is_newer(row: MailboxState | Row, capture_pk: int, taken_at: datetime) -> bool:
    if row.taken_at is None or row.capture_pk is None:
        return True
    return (taken_at, capture_pk) > (row.taken_at, row.capture_pk)


# apply's statements, plain and built once (the ORM's load, unit of work and flush of the state row cost
# ~1 ms of every vision job): the row read for update, then written back whole, and the event inserted.
_states = MailboxState.__table__.c
_APPLIED = ("state", "since", "capture_pk", "taken_at", "categories", "package_present", "updated_at")
_STATE_FOR_UPDATE = (
    select(*(_states[name] for name in _APPLIED if name != "updated_at"))
    .where(_states.device_id == bindparam("device"))
    .with_for_update()
)
_STATE_APPLIED = (
    update(MailboxState.__table__)
    .where(_states.device_id == bindparam("device"))
    .values({name: bindparam(f"set_{name}", type_=_states[name].type) for name in _APPLIED})
)
_DELIVERY_EVENT = insert(DeliveryEvent.__table__)


def apply(session: Session, device_id: int, capture_pk: int, taken_at: datetime, evidence: Evidence,
          now: datetime) -> Applied | None:
    """Run one frame through the device's state; None if the frame is older than the state's last."""
    row = session.execute(_STATE_FOR_UPDATE, {"device": device_id}).first()
    if row is None:  # the box's first frame: its row is made empty, race-safe, as everywhere else
        ensure_state(session, device_id, now)
        row = session.execute(_STATE_FOR_UPDATE, {"device": device_id}).one()
    if not is_newer(row, capture_pk, taken_at):
        return None
    change = transition(row.state, evidence, row.categories)
    new = {name: getattr(row, name) for name in _APPLIED if name != "updated_at"}
    if evidence.mail is not None and evidence.quality == "ok":
        new["capture_pk"], new["taken_at"] = capture_pk, taken_at
    if change in (ARRIVED, MORE):
        if change == ARRIVED:
            new["state"], new["since"] = "mail", taken_at
        new["categories"] = dict(evidence.categories)
        new["package_present"] = row.package_present or evidence.package
    elif change == COLLECTED:
        new.update(state="empty", since=taken_at, categories=None, package_present=False)
    new["updated_at"] = now
    session.execute(_STATE_APPLIED, {"device": device_id, **{f"set_{name}": new[name] for name in _APPLIED}})
    if change is not None:
        session.execute(_DELIVERY_EVENT, {"device_id": device_id, "capture_pk": capture_pk, "kind": change,
                                          "at": taken_at, "categories": dict(evidence.categories),
                                          "package_present": evidence.package})
    return Applied(change, new["state"], new["since"])


def mark_empty(session: Session, device_id: int, capture_pk: int, taken_at: datetime, now: datetime) -> None:
    """A person said this photo shows the box empty: the state follows if the photo is the newest."""
    row = ensure_state(session, device_id, now)
    if row.capture_pk != capture_pk and not is_newer(row, capture_pk, taken_at):
        return  # an older photo: what came after it stands
    if row.state == "mail":
        session.add(DeliveryEvent(device_id=device_id, capture_pk=capture_pk, kind=COLLECTED, at=taken_at,
                                  categories=None, package_present=False))
    row.state, row.since, row.categories, row.package_present = "empty", taken_at, None, False
    row.capture_pk, row.taken_at, row.updated_at = capture_pk, taken_at, now
    session.flush()


def history(session: Session, device_id: int, limit: int = 20) -> list[DeliveryEvent]:
    return list(session.scalars(
        select(DeliveryEvent).where(DeliveryEvent.device_id == device_id)
        .order_by(DeliveryEvent.at.desc(), DeliveryEvent.id.desc()).limit(limit)
    ))
