"""The image store contract, run against both stores: the local folder, and an S3 bucket through
boto3 on moto's standalone server (a stand-in for a real S3-compatible service: AWS, MinIO, R2)."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from typer.testing import CliRunner

from cloud.errors import ServiceUnavailable
from cloud.imagestore import open_image_store
from cloud.imagestore.config import ImageSettings
from cloud.imagestore.copy import copy_folder
from cloud.imagestore.folder import FolderImageStore
from cloud.imagestore.s3 import S3ImageStore
from cloud.services.images import check_jpeg, make_thumbnail
from mailcam.cli import app
from tests.cloudkit import capture_body, jpeg_bytes, make_settings, new_account, new_device


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    if request.param == "folder":
        return open_image_store(ImageSettings(), tmp_path / "images", thumbnail_side=64)
    moto_s3 = request.getfixturevalue("moto_s3")
    return open_image_store(moto_s3.settings(f"s3://{moto_s3.new_bucket()}/p"), tmp_path, thumbnail_side=64)


def _image(seed: int = 1) -> tuple[str, bytes, bytes]:
    data = jpeg_bytes(seed=seed)
    return check_jpeg(data, min_side=32, max_side=2048).sha256, data, make_thumbnail(data, 64)


def test_an_image_put_reads_back_whole_with_its_thumbnail(store):
    sha, data, thumb = _image()
    assert not store.exists(sha)
    store.put(sha, data, thumb)
    store.put(sha, data, thumb)  # again (a retry): harmless
    assert store.exists(sha)
    assert store.read(sha) == data
    assert store.read(sha, thumbnail=True) == thumb


def test_a_missing_image_is_file_not_found(store):
    sha, _, _ = _image()
    with pytest.raises(FileNotFoundError):
        store.read(sha)
    with pytest.raises(FileNotFoundError):
        store.read(sha, thumbnail=True)
    store.delete(sha)  # deleting what is not there is no error


def test_a_missing_thumbnail_is_rebuilt_from_the_original_and_kept(store):
    sha, data, _ = _image(seed=2)
    store.put(sha, data, None)
    thumb = store.read(sha, thumbnail=True)
    assert thumb.startswith(b"\xff\xd8") and thumb.endswith(b"\xff\xd9")
    assert check_jpeg(thumb, min_side=8, max_side=64).width == 64
    assert store.read(sha, thumbnail=True) == thumb


def test_delete_removes_the_original_and_the_thumbnail(store):
    sha, data, thumb = _image(seed=3)
    other_sha, other, other_thumb = _image(seed=4)
    store.put(sha, data, thumb)
    store.put(other_sha, other, other_thumb)
    store.delete(sha)
    assert not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.read(sha, thumbnail=True)
    assert store.read(other_sha) == other


def test_each_original_goes_out_with_its_sha256_for_the_service_to_check(moto_s3):
    """S3 (and MinIO, R2) refuse a PUT whose body does not match ``x-amz-checksum-sha256``. moto does
    not check it, so this asserts what the SDK really sent on the wire: the image's own SHA-256."""
    store = open_image_store(moto_s3.settings(f"s3://{moto_s3.new_bucket()}"), None, thumbnail_side=64)
    sent: list[dict] = []
    store.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
    sha, data, thumb = _image(seed=5)
    store.put(sha, data, thumb)
    original = next(h for h in sent if b"x-amz-checksum-sha256" in [k.lower().encode() for k in h])
    assert base64.b64decode(original["x-amz-checksum-sha256"]).hex() == sha


def test_an_unreachable_bucket_is_service_unavailable_not_a_crash(moto_s3):
    from tests.brokers import free_port

    settings = moto_s3.settings("s3://nowhere").model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    store = S3ImageStore.from_settings(settings, thumbnail_side=64)
    sha, data, thumb = _image()
    with pytest.raises(ServiceUnavailable):
        store.put(sha, data, thumb)


def test_a_capture_is_served_by_a_short_lived_presigned_url_when_set(moto_s3, tmp_path, database_url):
    from fastapi.testclient import TestClient

    from cloud.app import create_app

    images = moto_s3.settings(f"s3://{moto_s3.new_bucket()}/caps", serve="presigned", presign_ttl_s=60)
    with TestClient(create_app(make_settings(tmp_path, database_url, images=images))) as api:
        alice = new_account(api, "alice@example.com")
        box = new_device(api, alice, "box-1")
        image = jpeg_bytes(seed=11)
        assert (
            api.post(
                "/api/device/capture/", json=capture_body("box-1", image, capture_id="c1"), headers=box.headers
            ).status_code
            == 200
        )
        answer = api.get("/api/captures/c1/image", headers=alice.headers, follow_redirects=False)
        assert answer.status_code == 307 and answer.headers["cache-control"] == "no-store"
        url = answer.headers["location"]
        assert url.startswith(moto_s3.endpoint_url) and "X-Amz-Expires=60" in url
        assert httpx.get(url).content == image
        thumb = api.get("/api/captures/c1/thumbnail", headers=alice.headers, follow_redirects=False)
        assert thumb.status_code == 200 and thumb.content.startswith(b"\xff\xd8")  # small: served here
        # Someone else's capture: still 404 before any URL is made.
        bob = new_account(api, "bob@example.com")
        assert api.get("/api/captures/c1/image", headers=bob.headers, follow_redirects=False).status_code == 404


def test_images_migrate_copies_a_folder_and_resumes_where_it_stopped(moto_s3, tmp_path, monkeypatch):
    folder = FolderImageStore(tmp_path / "images", thumbnail_side=64)
    shas = []
    for seed in range(6):
        sha, data, thumb = _image(seed=20 + seed)
        folder.put(sha, data, thumb if seed % 2 else None)
        shas.append(sha)
    damaged = folder.path(shas[5])
    damaged.write_bytes(damaged.read_bytes()[:-4] + b"oops")
    (tmp_path / "images" / shas[0][:2] / ".tmp-123-1-0").write_bytes(b"half a file")  # a crashed write

    url = f"s3://{moto_s3.new_bucket()}/imgs"
    bucket = S3ImageStore.from_settings(moto_s3.settings(url), thumbnail_side=64)
    # An earlier run that stopped after two images.
    for sha in shas[:2]:
        bucket.put(sha, folder.read(sha), None)

    for name, value in (
        ("ENDPOINT_URL", moto_s3.endpoint_url),
        ("REGION", "us-east-1"),
        ("ACCESS_KEY_ID", "k"),
        ("SECRET_ACCESS_KEY", "s"),
        ("ADDRESSING_STYLE", "path"),
    ):
        monkeypatch.setenv(f"MAILCAM_IMAGES__{name}", value)
    result = CliRunner().invoke(app, ["images", "migrate", "--from", str(tmp_path / "images"), "--to", url])
    assert result.exit_code == 1, result.output  # the damaged file is reported
    # shas[0] is whole in the bucket; shas[1] lacks the thumbnail the folder has, so it goes again.
    assert "copied 4 images" in result.output and "1 already there" in result.output
    assert "damaged" in result.output and shas[5] in result.output
    for sha in shas[:5]:
        assert bucket.read(sha) == folder.read(sha)
        assert hashlib.sha256(bucket.read(sha)).hexdigest() == sha
    assert not bucket.exists(shas[5])
    assert bucket.read(shas[1], thumbnail=True) == folder.read(shas[1], thumbnail=True)

    again = copy_folder(tmp_path / "images", bucket)
    assert (again.copied, again.already_there) == (0, 5)
