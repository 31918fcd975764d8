"""Trigger commands: the retained `cmd` published per device, and the triggers already answered."""

from __future__ import annotations

from gateway.spool.base import SpoolBase


class Commands(SpoolBase):
    def cmds(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {s: (t, e) for s, t, e in self._db.execute("SELECT serial, tid, exp FROM cmds")}

    def set_cmd(self, serial: str, tid: str | None, exp: int = 0) -> None:
        with self.transaction() as db:
            if tid is None:
                db.execute("DELETE FROM cmds WHERE serial = ?", (serial,))
            else:
                db.execute("INSERT OR REPLACE INTO cmds(serial, tid, exp) VALUES (?,?,?)", (serial, tid, exp))

    def trigger_done(self, tid: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO done_triggers(tid, at) VALUES (?, ?)", (tid, self.clock()))

    def done_triggers(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT tid FROM done_triggers")}
