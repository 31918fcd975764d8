"""Firmware updates: signed releases, rollouts in two waves, and each device's update state.

A release is accepted only if this cloud's release key (``MAILCAM_FIRMWARE_PUBLIC_KEY``, the key
devices are provisioned with) verifies its signature and every file matches the signed manifest: the
cloud never stores something its devices would refuse. Who may upload is therefore decided by who
holds the private key (``mailcam release keygen``), not by an account role.

A rollout targets devices the caller manages (owns, or registered as installer): one, a list, or a
percentage (a stable pseudo-random choice). Its first ``first_wave`` devices are offered the release
at once; the rest wait until every first-wave device is through (installed, refused or rolled back).
When the first wave's failures pass ``max_failure_rate`` of it, the rollout halts: nothing more is
offered (devices already running the release keep it).

    waiting ──(first wave through)──► pending ──► downloading n% ──► staged ──► installed
                                          └──────────────┴──────────────► refused | rolled_back (+ why)

States come from the device's telemetry: ``ota`` (``mcam.protocol.OTA_STATES``) and the version it runs.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mcam import protocol
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cloud.errors import Conflict, NotFound, ValidationFailed
from cloud.models import Device, FirmwareRelease, Rollout, RolloutDevice, RolloutStatus, UpdateState, User

_REPORTED = {
    "downloading": UpdateState.DOWNLOADING,
    "staged": UpdateState.STAGED,
    "installed": UpdateState.INSTALLED,
    "rolled_back": UpdateState.ROLLED_BACK,
    "refused": UpdateState.REFUSED,
}
_OFFERED = (UpdateState.PENDING, UpdateState.DOWNLOADING, UpdateState.STAGED)


# ---------------------------------------------------------------- releases


def verify_release(public_key: str | None, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    """A release file -> (signature, bundle, manifest), or ValidationFailed saying why it is refused."""
    if not public_key:
        raise Conflict("this cloud takes no releases: it has no release key (MAILCAM_FIRMWARE_PUBLIC_KEY)")
    try:
        signature, bundle = protocol.decode_release_file(data)
        line, manifest = protocol.check_bundle(bundle)
    except protocol.ProtocolError as exc:
        raise ValidationFailed(f"not a valid release: {exc}") from None
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(signature), protocol.release_message(line)
        )
    except (InvalidSignature, ValueError):
        raise ValidationFailed("the release is not signed with this cloud's release key") from None
    return signature, bundle, manifest


def add_release(session: Session, public_key: str | None, data: bytes, user: User, now: datetime) -> FirmwareRelease:
    signature, bundle, manifest = verify_release(public_key, data)
    if session.scalar(select(FirmwareRelease.id).where(FirmwareRelease.version == manifest["ver"])):
        raise Conflict(f"release {manifest['ver']} exists already", version=manifest["ver"])
    release = FirmwareRelease(
        version=manifest["ver"],
        signature=signature,
        sha256=hashlib.sha256(bundle).hexdigest(),
        size=len(bundle),
        files=len(manifest["files"]),
        bundle=bundle,
        uploaded_by=user.id,
        created_at=now,
    )
    session.add(release)
    session.flush()
    return release


def releases(session: Session) -> list[FirmwareRelease]:
    return list(session.scalars(select(FirmwareRelease).order_by(FirmwareRelease.id.desc())))


def release_by_version(session: Session, version: str) -> FirmwareRelease:
    release = session.scalar(select(FirmwareRelease).where(FirmwareRelease.version == version))
    if release is None:
        raise NotFound(f"no release {version}", version=version)
    return release


def bundle_range(session: Session, release_id: int, offset: int, length: int | None) -> bytes:
    release = session.get(FirmwareRelease, release_id)
    if release is None:
        raise NotFound("no such release", release_id=release_id)
    end = release.size if length is None else min(release.size, offset + length)
    return release.bundle[offset:end]


# ---------------------------------------------------------------- rollouts


def managed_devices(session: Session, user: User) -> list[Device]:
    return list(
        session.scalars(
            select(Device).where((Device.owner_id == user.id) | (Device.installer_id == user.id)).order_by(Device.id)
        )
    )


def choose_targets(
    session: Session, user: User, release: FirmwareRelease, *, serials: list[str] | None, percent: int | None
) -> list[Device]:
    """The devices a rollout goes to, in wave order: the listed ones (each must be the caller's), or
    ``percent`` of the caller's devices by a stable hash of release and serial."""
    mine = managed_devices(session, user)
    if serials is not None:
        by_serial = {d.serial: d for d in mine}
        missing = [s for s in serials if s not in by_serial]
        if missing:
            raise NotFound(f"no such device: {missing[0]}", device_serial=missing[0])
        return [by_serial[s] for s in dict.fromkeys(serials)]
    assert percent is not None
    ranked = sorted(mine, key=lambda d: hashlib.sha256(f"{release.version}:{d.serial}".encode()).digest())
    return ranked[: math.ceil(len(ranked) * percent / 100)]


def start_rollout(
    session: Session,
    user: User,
    release: FirmwareRelease,
    targets: list[Device],
    *,
    first_wave: int | None,
    max_failure_rate: float,
    now: datetime,
) -> Rollout:
    if not targets:
        raise ValidationFailed("the rollout has no devices")
    wave1 = min(len(targets), first_wave or max(1, math.ceil(len(targets) / 10)))
    rollout = Rollout(
        release_id=release.id,
        created_by=user.id,
        status=RolloutStatus.ACTIVE,
        first_wave=wave1,
        max_failure_rate=max_failure_rate,
        created_at=now,
    )
    session.add(rollout)
    session.flush()
    for i, device in enumerate(targets):
        first = i < wave1
        state = UpdateState.PENDING if first else UpdateState.WAITING
        if device.firmware_version == release.version:
            state = UpdateState.INSTALLED
        session.add(
            RolloutDevice(
                rollout_id=rollout.id,
                device_id=device.id,
                wave=1 if first else 2,
                state=state,
                progress=100 if state is UpdateState.INSTALLED else 0,
                updated_at=now,
            )
        )
    session.flush()
    _evaluate(session, rollout)
    return rollout


def rollout_of(session: Session, user: User, rollout_id: int) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None or rollout.created_by != user.id:
        raise NotFound("no such rollout", rollout_id=rollout_id)
    return rollout


def cancel(rollout: Rollout) -> None:
    """Stop offering the release (devices that installed it keep it; a download in progress stops)."""
    if rollout.status is RolloutStatus.ACTIVE:
        rollout.status = RolloutStatus.CANCELLED


def rollout_devices(session: Session, rollout: Rollout) -> list[tuple[RolloutDevice, Device]]:
    rows = session.execute(
        select(RolloutDevice, Device)
        .join(Device, Device.id == RolloutDevice.device_id)
        .where(RolloutDevice.rollout_id == rollout.id)
        .order_by(RolloutDevice.id)
    )
    return [(r, d) for r, d in rows]


def _evaluate(session: Session, rollout: Rollout) -> None:
    """Halt on too many first-wave failures; open the second wave once the first is through."""
    if rollout.status is not RolloutStatus.ACTIVE:
        return
    first = list(
        session.scalars(select(RolloutDevice).where(RolloutDevice.rollout_id == rollout.id, RolloutDevice.wave == 1))
    )
    failed = sum(1 for r in first if r.state.failed)
    if first and failed / len(first) > rollout.max_failure_rate:
        rollout.status = RolloutStatus.HALTED
        rollout.halted_reason = (
            f"{failed} of {len(first)} first-wave devices failed (more than {rollout.max_failure_rate:.0%})"
        )
        return
    if all(r.state.done for r in first):
        for row in session.scalars(
            select(RolloutDevice).where(
                RolloutDevice.rollout_id == rollout.id, RolloutDevice.state == UpdateState.WAITING
            )
        ):
            row.state = UpdateState.PENDING


def _current_rows(session: Session, device_ids: list[int]) -> dict[int, tuple[RolloutDevice, Rollout]]:
    """Each device's row in its newest rollout (a newer rollout supersedes an older one)."""
    rows = session.execute(
        select(RolloutDevice, Rollout)
        .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
        .where(RolloutDevice.device_id.in_(device_ids))
        .order_by(Rollout.id)
    )
    return {r.device_id: (r, ro) for r, ro in rows}


def offers(session: Session, device_ids: list[int]) -> dict[int, FirmwareRelease]:
    """device id -> the release it is offered now (active rollout, its wave open, not through)."""
    out: dict[int, FirmwareRelease] = {}
    for device_id, (row, rollout) in _current_rows(session, device_ids).items():
        if rollout.status is RolloutStatus.ACTIVE and row.state in _OFFERED:
            out[device_id] = session.get(FirmwareRelease, rollout.release_id)
    return out


# Built once: every telemetry report asks (building and keying the clauses cost more than running them).
_IN_A_ROLLOUT = (
    select(RolloutDevice.__table__.c.id).where(RolloutDevice.__table__.c.device_id == bindparam("device_id")).limit(1)
)


def on_report(
    session: Session, device: Device, report: dict[str, Any] | None, running: str | None, now: datetime
) -> None:
    """The device's telemetry: its update report (``schemas.FirmwareUpdateReport`` as a dict) and the
    version it runs move its rollout row."""
    if session.connection().execute(_IN_A_ROLLOUT, {"device_id": device.id}).first() is None:
        return  # most reports: the device is in no rollout (nor is any device, on most clouds)
    current = _current_rows(session, [device.id]).get(device.id)
    if current is None:
        return
    row, rollout = current
    release = session.get(FirmwareRelease, rollout.release_id)
    state, progress, reason = row.state, row.progress, row.reason
    if report and report.get("release_id") == release.id and report.get("state") in _REPORTED:
        state = _REPORTED[report["state"]]
        progress = 100 if state in (UpdateState.STAGED, UpdateState.INSTALLED) else int(report.get("percent") or 0)
        reason = (report.get("reason") or None) and report["reason"][:200]
    if running == release.version and not state.failed:
        state, progress = UpdateState.INSTALLED, 100
    if row.state is UpdateState.WAITING and state in _OFFERED:
        return  # not offered yet: an old report of something else
    if (state, progress, reason) != (row.state, row.progress, row.reason):
        row.state, row.progress, row.reason, row.updated_at = state, progress, reason, now
        session.flush()
        _evaluate(session, rollout)


def device_update(session: Session, device: Device) -> tuple[RolloutDevice, Rollout, FirmwareRelease] | None:
    current = _current_rows(session, [device.id]).get(device.id)
    if current is None:
        return None
    row, rollout = current
    return row, rollout, session.get(FirmwareRelease, rollout.release_id)
