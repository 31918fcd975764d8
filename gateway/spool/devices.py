"""The device cache: the cloud's device list for this gateway, and what the broker said about each device.

``listed = 1``: the cloud named the serial in its last list (validation keeps working while the
cloud is away). ``listed = 0``: a serial only seen on the broker (its LWT status, telemetry):
remembered, never treated as known.
"""

from __future__ import annotations

from gateway.spool.base import SpoolBase


class DeviceCache(SpoolBase):
    def replace_devices(self, devices: list[tuple[str, int | None]]) -> None:
        """Store the cloud's list (serial, wake interval); serials no longer listed become unlisted."""
        with self.transaction() as db:
            db.execute("UPDATE devices SET listed = 0")
            db.executemany(
                "INSERT INTO devices(serial, wake_interval_s, listed) VALUES (?, ?, 1) "
                "ON CONFLICT(serial) DO UPDATE SET wake_interval_s = excluded.wake_interval_s, listed = 1",
                devices,
            )
            db.execute("DELETE FROM devices WHERE listed = 0 AND last_seen IS NULL")
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('devices_loaded_at', ?)", (str(self.clock()),))

    def known_devices(self) -> set[str] | None:
        """The serials the cloud listed, or None if the cloud has never been asked successfully."""
        with self._lock:
            if self._scalar("SELECT value FROM kv WHERE key = 'devices_loaded_at'") is None:
                return None
            return {row[0] for row in self._db.execute("SELECT serial FROM devices WHERE listed = 1")}

    def device_seen(self, serial: str, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO devices(serial, last_seen, status, listed) VALUES (?, ?, ?, 0) "
                "ON CONFLICT(serial) DO UPDATE SET last_seen = excluded.last_seen, status = excluded.status",
                (serial, self.clock(), status),
            )
