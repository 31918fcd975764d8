"""Helpers for the live tests: a real server-sent-events client, and a watch on queue claims."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine, event

DEADLINE_S = 15.0


@dataclass(frozen=True)
class Sse:
    id: int | None
    event: str
    data: dict
    received_at: float  # time.perf_counter() when its blank line arrived


class SseClient:
    """``GET /api/events/`` read in a thread (httpx streaming), events parsed per the SSE spec
    (WHATWG HTML §9.2.6: field lines up to a blank line), handed over through a queue."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None, params: dict | None = None) -> None:
        self.events: queue.Queue[Sse] = queue.Queue()
        self.opened = threading.Event()  # the server's "open" event arrived: subscribed
        self.status: int | None = None
        self.error_body: bytes | None = None
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(
            target=self._run, args=(headers or {}, params or {}), daemon=True, name="sse-client"
        )
        self._thread.start()

    def _run(self, headers: dict[str, str], params: dict) -> None:
        try:
            with self._client.stream("GET", "/api/events/", headers=headers, params=params) as response:
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self.status = response.status_code
                if response.status_code != 200:
                    self.error_body = response.read()
                    self.opened.set()
                    return
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        continue  # a keep-alive
                    if line == "":
                        if "data" in fields:
                            data = json.loads(fields["data"])
                            event_id = int(fields["id"]) if "id" in fields else None
                            kind = fields.get("event") or data.get("kind", "message")
                            if kind == "open":
                                self.opened.set()  # subscribed: what commits from now on is pushed
                            else:
                                self.events.put(Sse(event_id, kind, data, time.perf_counter()))
                        fields = {}
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError, OSError):
            if not self._stop.is_set():
                raise

    def wait_open(self) -> SseClient:
        assert self.opened.wait(DEADLINE_S), "the stream did not open"
        return self

    def next(self, timeout: float = DEADLINE_S) -> Sse:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def take(self, count: int) -> list[Sse]:
        return [self.next() for _ in range(count)]

    def close(self) -> None:
        """Drop the connection as a browser tab would (a blocked read ends only when its socket does)."""
        self._stop.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClaimWatch:
    """Records when an UPDATE that leases a row of ``table`` runs on ``engine`` (a worker's pickup)."""

    def __init__(self, engine: Engine, table: str) -> None:
        self.table = table
        self.claims: list[float] = []
        self.seen = threading.Condition()
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn, _cursor, statement: str, *_args) -> None:
        text = statement.lstrip().upper()
        # A lease: status, locked_by and attempts + 1 (a release sets no attempts).
        if text.startswith(f"UPDATE {self.table.upper()} SET STATUS") and "ATTEMPTS" in text and "LOCKED_BY" in text:
            with self.seen:
                self.claims.append(time.perf_counter())
                self.seen.notify_all()

    def wait_for(self, count: int, timeout: float = DEADLINE_S) -> float:
        with self.seen:
            assert self.seen.wait_for(lambda: len(self.claims) >= count, timeout=timeout), self.claims
            return self.claims[count - 1]

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)
