"""Content-addressed image files shared by captures: a delete never removes a file still in use.

The races run against both image stores: the local folder and an S3 bucket (moto's standalone
server as a stand-in for a real S3-compatible service, through boto3).
"""

import os
import stat
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from cloud.imagestore.folder import FolderImageStore
from cloud.models import Capture, Device, TriggerType
from cloud.services import ingest, retention
from tests.cloudkit import b64, capture_body, jpeg_bytes, make_settings, new_account, new_device

WAIT_S = 30


@pytest.fixture(params=["folder", "s3"])
def cloud_settings(request, tmp_path, database_url):
    if request.param == "folder":
        return make_settings(tmp_path, database_url)
    moto_s3 = request.getfixturevalue("moto_s3")
    return make_settings(tmp_path, database_url, images=moto_s3.settings(f"s3://{moto_s3.new_bucket()}/images"))


class PausingImageStore:
    """The real store (folder or bucket), paused after its first ``put`` until the test lets it go on."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.first_put_done = threading.Event()
        self.go_on = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def put(self, sha256: str, data: bytes, thumbnail: bytes | None) -> None:
        self.inner.put(sha256, data, thumbnail)
        if not self.first_put_done.is_set():
            self.first_put_done.set()
            assert self.go_on.wait(WAIT_S)


def test_delete_during_an_identical_upload_keeps_the_new_captures_file(api, cloud_ctx):
    """Expected: capture B, uploaded with the same image while capture A is deleted, keeps its file.
    Happened: B's upload found the file already there, A's delete then unlinked it (no capture was
    committed with that hash yet), and B was committed pointing at a missing file (image → 404)."""
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    image = jpeg_bytes(seed=7)
    assert api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id="cap-a"),
                    headers=box.headers).status_code == 200

    store = PausingImageStore(cloud_ctx.images)
    cloud_ctx.images = store
    errors: list[BaseException] = []

    def upload_b() -> None:
        try:
            with cloud_ctx.sessions() as session:
                device = session.scalar(select(Device).where(Device.serial == "box-1"))
                ingest.ingest_capture(session, cloud_ctx, device, ingest.CaptureIn(
                    image_b64=b64(image), trigger_type=TriggerType.AUTOMATIC, battery_voltage=None,
                    taken_at=datetime.now(UTC), capture_id="cap-b",
                ))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            store.first_put_done.set()

    uploader = threading.Thread(target=upload_b, name="upload-b")
    uploader.start()
    try:
        assert store.first_put_done.wait(WAIT_S)  # B has written (found) the file, not yet committed
        with cloud_ctx.sessions() as session:
            pk_a = session.scalar(select(Capture.id).where(Capture.capture_id == "cap-a"))
            assert retention.delete_captures(session, cloud_ctx, [pk_a]) == 1
    finally:
        store.go_on.set()
        uploader.join(WAIT_S)
    assert not errors, errors

    response = api.get("/api/captures/cap-b/image", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.content == image
    assert api.get("/api/captures/cap-a", headers=alice.headers).status_code == 404


def test_deleting_the_last_capture_of_an_image_removes_its_file(api, cloud_ctx):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    image = jpeg_bytes(seed=8)
    for capture_id in ("one", "two"):
        api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id=capture_id), headers=box.headers)
    with cloud_ctx.sessions() as session:
        sha = session.scalar(select(Capture.image_sha256).where(Capture.capture_id == "one"))
    assert api.delete("/api/captures/one", headers=alice.headers).status_code == 204
    assert cloud_ctx.images.exists(sha)  # "two" still uses it
    assert api.delete("/api/captures/two", headers=alice.headers).status_code == 204
    assert not cloud_ctx.images.exists(sha)
    with pytest.raises(FileNotFoundError):
        cloud_ctx.images.read(sha, thumbnail=True)


def test_the_image_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Expected: the directory holding a new original is fsynced (a rename is durable only then).
    Happened: only the file was fsynced; after a power loss the name could be gone."""
    synced: list[os.stat_result] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = FolderImageStore(tmp_path / "images")
    sha = "ab" * 32
    store.put(sha, jpeg_bytes(), b"\xff\xd8thumb\xff\xd9")

    folder = os.stat(store.path(sha).parent)
    dirs = [(s.st_dev, s.st_ino) for s in synced if stat.S_ISDIR(s.st_mode)]
    assert (folder.st_dev, folder.st_ino) in dirs
    root = os.stat(store.root)
    assert (root.st_dev, root.st_ino) in dirs  # the new shard folder's own entry


class PausingInsideTheTransaction:
    """The real store, paused where ingest checks the file again: inside its transaction, holding the lock."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.holding = threading.Event()
        self.go_on = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def exists(self, sha256: str) -> bool:
        found = self.inner.exists(sha256)
        self.holding.set()
        assert self.go_on.wait(WAIT_S)
        return found


def _lock_waiters(ctx) -> int:
    with ctx.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).scalar_one()


def test_a_delete_waits_for_an_ingest_holding_the_same_image(api, cloud_ctx, database_url):
    """On PostgreSQL (several replicas) the lock row is what orders them: a delete that meets an ingest
    of the same image inside its transaction waits for it, then sees the new capture and keeps the file."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the two transactions cannot overlap")
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    image = jpeg_bytes(seed=9)
    api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id="cap-a"), headers=box.headers)
    store = PausingInsideTheTransaction(cloud_ctx.images)
    cloud_ctx.images = store
    errors: list[BaseException] = []

    def run(work) -> None:
        try:
            with cloud_ctx.sessions() as session:
                work(session)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            store.holding.set()

    def upload_b(session) -> None:
        device = session.scalar(select(Device).where(Device.serial == "box-1"))
        ingest.ingest_capture(session, cloud_ctx, device, ingest.CaptureIn(
            image_b64=b64(image), trigger_type=TriggerType.AUTOMATIC, battery_voltage=None,
            taken_at=datetime.now(UTC), capture_id="cap-b",
        ))

    def delete_a(session) -> None:
        pk_a = session.scalar(select(Capture.id).where(Capture.capture_id == "cap-a"))
        retention.delete_captures(session, cloud_ctx, [pk_a])

    uploader = threading.Thread(target=run, args=(upload_b,), name="upload-b")
    deleter = threading.Thread(target=run, args=(delete_a,), name="delete-a")
    uploader.start()
    try:
        assert store.holding.wait(WAIT_S) and not errors
        deleter.start()
        deadline = time.monotonic() + WAIT_S
        while _lock_waiters(cloud_ctx) == 0:  # the delete is queued behind the ingest's lock
            assert time.monotonic() < deadline, "the delete did not wait for the ingest"
            time.sleep(0.01)
    finally:
        store.go_on.set()
        uploader.join(WAIT_S)
        if deleter.ident is not None:  # started
            deleter.join(WAIT_S)
    assert not errors, errors
    assert api.get("/api/captures/cap-b/image", headers=alice.headers).content == image
