"""Content-addressed image files shared by captures: a delete never removes a file still in use."""

import os
import stat
import threading
from datetime import UTC, datetime

from sqlalchemy import select

from cloud.models import Capture, Device, TriggerType
from cloud.services import ingest, retention
from cloud.services.images import ImageStore
from tests.cloudkit import b64, capture_body, jpeg_bytes, new_account, new_device

WAIT_S = 30


class PausingImageStore(ImageStore):
    """The real store, paused after its first ``put`` until the test lets it go on."""

    def __init__(self, root, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.first_put_done = threading.Event()
        self.go_on = threading.Event()

    def put(self, sha256: str, data: bytes, thumbnail: bytes) -> None:
        super().put(sha256, data, thumbnail)
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

    store = PausingImageStore(cloud_ctx.images.root, thumbnail_side=cloud_ctx.images.thumbnail_side)
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
    path = cloud_ctx.images.path(sha)
    assert api.delete("/api/captures/one", headers=alice.headers).status_code == 204
    assert path.exists()  # "two" still uses it
    assert api.delete("/api/captures/two", headers=alice.headers).status_code == 204
    assert not path.exists()


def test_the_image_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Expected: the directory holding a new original is fsynced (a rename is durable only then).
    Happened: only the file was fsynced; after a power loss the name could be gone."""
    synced: list[os.stat_result] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = ImageStore(tmp_path / "images")
    sha = "ab" * 32
    store.put(sha, jpeg_bytes(), b"\xff\xd8thumb\xff\xd9")

    folder = os.stat(store.path(sha).parent)
    dirs = [(s.st_dev, s.st_ino) for s in synced if stat.S_ISDIR(s.st_mode)]
    assert (folder.st_dev, folder.st_ino) in dirs
    root = os.stat(store.root)
    assert (root.st_dev, root.st_ino) in dirs  # the new shard folder's own entry
