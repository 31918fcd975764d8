"""A slow webhook holds one sender for at most its deadline, and never anyone else's notifications.

Found in review: one webhook answering 1 byte every 5 s held every other user's notifications
for 39 s (the worker sent in batches and waited for the slowest; the 10 s timeout is per read).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cloud import netguard
from cloud.events import DomainEvent, Event
from cloud.notify.base import OutgoingMessage, TemporaryFailure
from cloud.notify.webhook import WebhookChannel
from cloud.notify.worker import DeliveryWorker
from tests.notify.conftest import add_webhook, emit, make_owner, notifications
from tests.notify.fakes import FakeHttp, Reply

DEADLINE_S = 15  # how long a test waits for what must happen promptly


class Dripper:
    """A webhook receiver that reads the request, then answers one byte every ``interval_s``
    (a status line that never ends), or with ``endless_body``, a 200 whose body never ends."""

    def __init__(self, *, interval_s: float = 0.5, endless_body: bool = False) -> None:
        self.interval_s = interval_s
        self.endless_body = endless_body
        self.stop = threading.Event()
        self.connections = 0
        self.most_at_once = 0
        self._open = 0
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self._accept, name="dripper", daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open += 1
            self.most_at_once = max(self.most_at_once, self._open)
            self.arrived.notify_all()
        try:
            conn.recv(65536)
            if self.endless_body:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
                while not self.stop.is_set():
                    conn.sendall(chunk)
            else:
                for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                    # Wait one interval, watching for the client hanging up (to count open sends exactly).
                    readable, _, _ = select.select([conn], [], [], self.interval_s)
                    if self.stop.is_set() or (readable and not conn.recv(1)):
                        break
                    conn.sendall(bytes([byte]))
        except OSError:
            pass  # the client gave up: what a deadline is for
        finally:
            conn.close()
            with self._lock:
                self._open -= 1

    def wait_for_connections(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: self.connections >= count, timeout=DEADLINE_S), self.connections

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def dripper() -> Iterator[Dripper]:
    server = Dripper()
    yield server
    server.close()


def _message(url: str) -> OutgoingMessage:
    return OutgoingMessage(notification_id=1, kind="mail_arrived", event_key="k", title="t", body="b", data={},
                           created_at=datetime.now(UTC), address=url, extras={"secret": "whsec_x"})


def _send_in_thread(channel: WebhookChannel, url: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = channel.send(_message(url))
        except Exception as exc:  # the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _channel(deadline_s: float) -> WebhookChannel:
    return WebhookChannel(now=lambda: datetime.now(UTC), policy=netguard.Policy.from_allow(["127.0.0.0/8"]),
                          timeout_s=10, deadline_s=deadline_s)


def test_a_dripping_webhook_is_cut_off_at_the_overall_deadline(dripper):
    """Expected: a temporary failure after the 1 s deadline, though every read is under its 10 s timeout.
    Before: the send lasted as long as the receiver kept dripping."""
    channel = _channel(deadline_s=1.0)
    try:
        thread, outcome = _send_in_thread(channel, dripper.url)
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "the send outlived its deadline"
    finally:
        channel.close()
    assert isinstance(outcome.get("error"), TemporaryFailure)
    assert outcome["error"].detail == "the webhook did not answer in time"


def test_the_answers_body_is_not_read():
    """Expected: the status decides and the body is never downloaded. Before: an endless body was read forever."""
    endless = Dripper(endless_body=True)
    channel = _channel(deadline_s=60)
    try:
        thread, outcome = _send_in_thread(channel, endless.url)
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "the send kept reading an endless body"
    finally:
        endless.close()
        channel.close()
    assert outcome["result"].provider_id == "http-200"


def test_slow_webhooks_of_one_user_do_not_hold_another_users_notifications(nctx, dripper):
    """Expected: Bob's webhook gets his notification at once while Alice's five dripping webhooks
    hold at most two senders and are cut off at their deadline (retried later).
    Before: Bob waited until Alice's batch was done."""
    settings = nctx.settings.notify
    settings.worker_poll_interval_s = 0.05
    settings.senders = 4
    settings.sends_per_user = 2
    settings.webhook_deadline_s = 4
    alice = make_owner(nctx, "alice@example.com", serial="box-a")
    bob = make_owner(nctx, "bob@example.com", serial="box-b")
    for _ in range(5):
        add_webhook(nctx, alice, dripper.url)
    worker = DeliveryWorker(nctx)
    with FakeHttp(lambda seen: Reply(200, {})) as receiver:
        add_webhook(nctx, bob, receiver.url + "/bob")
        worker.start()
        try:
            emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=alice.user_id, key="budget:alice"))
            dripper.wait_for_connections(2)  # Alice's sends are in flight, dripping
            emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=bob.user_id, key="budget:bob"))
            receiver.wait_for(1, "/bob", timeout=DEADLINE_S)
            deadline = time.monotonic() + 60
            while len([r for r in notifications(nctx, channel="webhook", user_id=alice.user_id)
                       if r.delivery == "pending" and r.last_error]) < 5:
                assert time.monotonic() < deadline, [(r.delivery, r.last_error) for r in notifications(nctx)]
                time.sleep(0.05)
        finally:
            worker.stop()
    assert dripper.most_at_once <= 2
    assert {r.last_error for r in notifications(nctx, channel="webhook", user_id=alice.user_id)} == {
        "the webhook did not answer in time"
    }
