"""Domain events → the notifications an owner sees (kind, title, body, data).

Mail alerts come from the mailbox's delivery state (``cloud.vision.delivery``), never from a
single frame's label: a delivery that ``arrived`` becomes one notification, the most specific
that holds (package damaged > package arrived > mail arrived); ``more`` mail on top is one
more; ``collected`` is the opt-in "mailbox empty". The photos in between say nothing.

An analysis itself only asks for a retake when the photo is unusable (never claiming "empty"),
and a failed analysis is never read as "no mail". An uncalibrated mailbox asks its owner, once,
for a photo of it empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cloud.events import DomainEvent, Event
from cloud.notify import kinds
from cloud.notify.base import short
from cloud.notify.preferences import Preferences
from cloud.vision.base import MailCategory

# Events told to the owner as they are, one notification each (raised by the scheduled checks).
PASS_THROUGH = {
    DomainEvent.LOW_BATTERY: kinds.LOW_BATTERY,
    DomainEvent.DEVICE_OFFLINE: kinds.DEVICE_OFFLINE,
    DomainEvent.TRIGGER_FULFILLED: kinds.TRIGGER_FULFILLED,
    DomainEvent.TRIGGER_EXPIRED: kinds.TRIGGER_EXPIRED,
    DomainEvent.AI_BUDGET_REACHED: kinds.AI_BUDGET_REACHED,
    DomainEvent.DAILY_DIGEST: kinds.DAILY_DIGEST,
}
NOT_DAMAGED = {None, "", "none", "no", "intact", "unknown", "ok"}
CATEGORY_WORDS = {category.value: (category.value, category.plural) for category in MailCategory}


@dataclass(frozen=True)
class Draft:
    kind: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    # Replaces the event's key for de-duplication (per capture rather than per analysis run).
    key: str | None = None


REUSED_SOURCES = {"unchanged", "cache"}
# Every event kind drafts_for can turn into a notification. The sink checks it before loading the
# owner's preferences: most events (each photo and telemetry received) never notify anyone.
NOTIFYING = frozenset({DomainEvent.ANALYSIS_COMPLETED, DomainEvent.MAIL_DELIVERY, DomainEvent.CALIBRATION_NEEDED,
                       DomainEvent.ANALYSIS_FAILED, *PASS_THROUGH})


def silent(event: Event) -> bool:
    """``event`` notifies nobody, whatever its owner's preferences: the sink asks before loading them.
    Most events are: every photo and telemetry received, and every analysis of a usable photo."""
    if event.kind == DomainEvent.ANALYSIS_COMPLETED:
        return not _asks_for_retake(event.data)
    return event.kind not in NOTIFYING


def drafts_for(event: Event, prefs: Preferences, device_name: str | None) -> list[Draft]:
    """The notifications ``event`` means for its owner (before channels and quiet hours)."""
    data = dict(event.data)
    where = device_name or data.get("device_serial") or "your mailbox"
    if event.kind == DomainEvent.ANALYSIS_COMPLETED:
        if not _asks_for_retake(data):
            return []
        capture = data.get("capture_id") or event.capture_pk
        return [replace(render(kinds.RETAKE_NEEDED, data, where), key=f"capture:{capture}")]
    if event.kind == DomainEvent.MAIL_DELIVERY:
        capture = data.get("capture_id") or event.capture_pk
        return [replace(d, key=f"delivery:{capture}") for d in _delivery_drafts(data, prefs, where)]
    if event.kind == DomainEvent.CALIBRATION_NEEDED:
        return [replace(render(kinds.CALIBRATION_NEEDED, data, where), key=f"calibration:{event.device_id}")]
    if event.kind == DomainEvent.ANALYSIS_FAILED:
        capture = data.get("capture_id") or event.capture_pk
        return [Draft(kinds.ANALYSIS_FAILED, f"Could not check {where}", _failed_body(data), data,
                      key=f"capture:{capture}")]
    if event.kind in PASS_THROUGH:
        return [render(PASS_THROUGH[event.kind], data, where)]
    return []


def _asks_for_retake(data: dict[str, Any]) -> bool:
    """An analysis tells its owner only that the photo was unusable, and only on its first, own look."""
    if data.get("source") in REUSED_SOURCES or data.get("analysis_kind") == "reanalyse":
        return False
    return (data.get("image_quality") or "ok") != "ok"


def _delivery_drafts(data: dict[str, Any], prefs: Preferences, where: str) -> list[Draft]:
    transition = data.get("transition")
    if transition == "collected":
        return [render(kinds.MAILBOX_EMPTY, data, where)]
    if float(data.get("confidence") or 0.0) < prefs.min_confidence:
        return []  # the owner asked for surer alerts than this
    damage = data.get("package_damage")
    damage_conf = data.get("package_damage_confidence")
    damage_conf = float(damage_conf) if damage_conf is not None else 0.0
    if data.get("package_present") and damage not in NOT_DAMAGED and damage_conf >= prefs.min_confidence:
        return [render(kinds.PACKAGE_DAMAGED, data, where)]
    if transition == "more":
        return [render(kinds.MORE_MAIL, data, where)]
    if data.get("package_present"):
        return [render(kinds.PACKAGE_ARRIVED, data, where)]
    return [render(kinds.MAIL_ARRIVED, data, where)]


def render(kind: str, data: dict[str, Any], where: str) -> Draft:
    title, body = _TEXT.get(kind, _generic)(data, where)
    return Draft(kind, title, body, data)


def categories_text(categories: dict[str, Any] | None) -> str:
    parts = []
    for name, (one, many) in CATEGORY_WORDS.items():
        count = int((categories or {}).get(name) or 0)
        if count > 0:
            parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


def _mail(data: dict[str, Any], where: str) -> tuple[str, str]:
    summary = categories_text(data.get("categories"))
    description = (data.get("description") or "").strip()
    body = " — ".join(p for p in (summary, description) if p) or "New mail has arrived."
    return f"Mail in {where}", body


def _package(data: dict[str, Any], where: str) -> tuple[str, str]:
    description = (data.get("description") or "").strip()
    return f"Package in {where}", description or "A package has arrived."


def _damaged(data: dict[str, Any], where: str) -> tuple[str, str]:
    damage = data.get("package_damage") or "some"
    return f"Package in {where} may be damaged", f"It shows {damage} damage. Check it before accepting it."


def _empty(_data: dict[str, Any], where: str) -> tuple[str, str]:
    return f"Mail collected from {where}", "The mailbox is empty again."


def _more(data: dict[str, Any], where: str) -> tuple[str, str]:
    summary = categories_text(data.get("categories"))
    return f"More mail in {where}", (f"Now in the box: {summary}." if summary else "Something new was added.")


def _calibrate(_data: dict[str, Any], where: str) -> tuple[str, str]:
    return (f"Calibrate {where}",
            "Open the mailbox, take a photo of it empty and press 'This is empty' in the dashboard. "
            "Until then mailcam cannot tell mail from the box itself, and sends no mail alerts.")


def _retake(data: dict[str, Any], where: str) -> tuple[str, str]:
    reason = {"too_dark": "too dark", "blurry": "blurry", "obstructed": "blocked"}.get(
        data.get("image_quality") or "", "unclear"
    )
    return f"Photo from {where} is {reason}", "Take another photo to see what is inside."


def _failed_body(data: dict[str, Any]) -> str:
    return "The photo was stored but could not be analysed" + (
        f" ({short(data['error'], 200)})." if data.get("error") else "."
    )


def _battery(data: dict[str, Any], where: str) -> tuple[str, str]:
    volts = data.get("battery_voltage")
    reading = f" ({float(volts):.2f} V)" if volts is not None else ""
    return f"Battery low in {where}{reading}", "Recharge or replace the battery soon."


def _offline(data: dict[str, Any], where: str) -> tuple[str, str]:
    last = data.get("last_seen_at") or "never"
    missed = data.get("missed_wakes", "several")
    return f"{where} is offline", f"It missed {missed} expected wakes (last heard: {last})."


def _fulfilled(_data: dict[str, Any], where: str) -> tuple[str, str]:
    return f"Your photo from {where} is ready", "The photo you asked for has arrived."


def _expired(data: dict[str, Any], where: str) -> tuple[str, str]:
    refund = " Your click was refunded." if data.get("click_refunded") else ""
    return f"Photo request to {where} expired", "The mailbox did not wake up in time." + refund


def _budget(_data: dict[str, Any], _where: str) -> tuple[str, str]:
    return "AI budget reached", "New photos are stored but not analysed until the budget resets."


def _digest(data: dict[str, Any], _where: str) -> tuple[str, str]:
    return data.get("title") or "Your mail today", data.get("text") or "No activity."


def _generic(data: dict[str, Any], where: str) -> tuple[str, str]:
    return f"Update from {where}", data.get("text") or ""


_TEXT = {
    kinds.MAIL_ARRIVED: _mail,
    kinds.PACKAGE_ARRIVED: _package,
    kinds.PACKAGE_DAMAGED: _damaged,
    kinds.MAILBOX_EMPTY: _empty,
    kinds.MORE_MAIL: _more,
    kinds.CALIBRATION_NEEDED: _calibrate,
    kinds.RETAKE_NEEDED: _retake,
    kinds.LOW_BATTERY: _battery,
    kinds.DEVICE_OFFLINE: _offline,
    kinds.TRIGGER_FULFILLED: _fulfilled,
    kinds.TRIGGER_EXPIRED: _expired,
    kinds.AI_BUDGET_REACHED: _budget,
    kinds.DAILY_DIGEST: _digest,
}
