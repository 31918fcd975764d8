"""Device data → the cloud's request bodies, in one place (units, field names, the seed's contract).

The device speaks the MQTT protocol of `mcam.protocol` (battery in mV, short field names); the
cloud's HTTP API wants the seed's fields (``battery_voltage`` in V, ``serial_number``, ...).
"""

from __future__ import annotations

import base64
from typing import Any


def volts(millivolts: int) -> float:
    return round(millivolts / 1000.0, 3)


def capture_body(serial: str, meta: dict[str, Any], image: bytes) -> dict[str, Any]:
    """`POST /api/device/capture/` for a reassembled capture (`meta` as the outbox stores it)."""
    return {
        "serial_number": serial,
        "image": base64.b64encode(image).decode(),
        "trigger_type": meta["trigger_type"],
        "battery_voltage": volts(meta["bat_mv"]),
        "timestamp": meta["ts"],
        "capture_id": meta["capture_id"],
        "trigger_id": meta["trigger_id"],
        "time_uncertain": bool(meta.get("time_uncertain")),
        "wake_reason": meta.get("wake"),
    }


def telemetry_body(serial: str, t: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/device/telemetry/` for a decoded telemetry message."""
    return {
        "serial_number": serial,
        "battery_voltage": volts(t["bat"]),
        "rssi": t["rssi"],
        "wake_reason": t["wake"],
        "awake_ms": t["awake_ms"],
        "firmware_version": t["fw"],
        "boot_count": t["boot"],
        "last_error": (t["err"] or None) and t["err"][:200],
        "pending_captures": t["pending"],
        "timestamp": t["ts"],
        "settings_version": t.get("cfgv"),
        "settings_error": (t.get("cfge") or None) and t["cfge"][:200],
        "firmware_update": _firmware_update(t.get("ota")),
    }


def _firmware_update(ota: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ota:
        return None
    return {"release_id": ota["rid"], "version": ota["ver"], "state": ota["st"], "percent": ota.get("pct") or 0,
            "reason": (ota.get("why") or None) and ota["why"][:200]}


def status_body(stats: dict[str, Any], broker: str | None) -> dict[str, Any]:
    """`POST /api/gateway/status/` from `Spool.outbox_stats()`: what the owner sees in the dashboard."""
    held = stats["held"]
    return {
        "backlog": sum(stats["depth"].values()) - held,  # held rows wait for a claim, not for the cloud
        "backlog_oldest_s": round(stats["oldest_age_s"], 1),
        "held": held,
        "dead_letters": stats["dead_letters"],
        "broker_connected": broker == "connected",
    }
