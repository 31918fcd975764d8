"""Images in an S3-compatible bucket, through boto3: ``<prefix>/<sha[:2]>/<sha>.jpg`` and ``….thumb.jpg``.

Why boto3: it is the reference SDK (AWS's own) that every S3-compatible service tests against,
its client is thread-safe (ingest runs in FastAPI's thread pool) with a connection pool, standard
retries with backoff, and presigned URLs signed locally (no request). obstore is faster per call,
but here a PUT costs a network round trip either way.

Durability: S3 answers a PUT with success only once the whole object is stored ("Amazon S3 never
adds partial objects; if you receive a success response, Amazon S3 added the entire object",
PutObject). Each original is sent with its SHA-256 (``ChecksumSHA256``, which is also its key),
so the service refuses bytes that changed on the way. Putting the same key twice stores the same
bytes: content addressing makes a retry harmless.

Any failure of the service (unreachable, 5xx after boto3's retries, access denied) is
``ServiceUnavailable`` (503: try again); a missing object is ``FileNotFoundError``.
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cloud.errors import ServiceUnavailable
from cloud.imagestore import object_name
from cloud.imagestore.config import ImageSettings
from cloud.services.images import looks_whole, make_thumbnail

_MISSING = {"404", "NoSuchKey", "NotFound"}


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/")."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3ImageStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "", *, thumbnail_side: int = 320) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.thumbnail_side = thumbnail_side

    @classmethod
    def from_settings(cls, settings: ImageSettings, *, thumbnail_side: int) -> S3ImageStore:
        assert settings.url, "from_settings needs MAILCAM_IMAGES__URL"
        bucket, prefix = split_url(settings.url)
        return cls(make_client(settings), bucket, prefix, thumbnail_side=thumbnail_side)

    def key(self, sha256: str, *, thumbnail: bool = False) -> str:
        return self.prefix + object_name(sha256, thumbnail=thumbnail)

    def put(self, sha256: str, data: bytes, thumbnail: bytes | None) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        self._call(
            "put_object",
            Bucket=self.bucket,
            Key=self.key(sha256),
            Body=data,
            ContentType="image/jpeg",
            ChecksumSHA256=checksum,
        )
        if thumbnail is not None:
            self._put_thumbnail(sha256, thumbnail)

    def exists(self, sha256: str) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self.key(sha256))
        except FileNotFoundError:
            return False
        return True

    def read(self, sha256: str, *, thumbnail: bool = False) -> bytes:
        if not thumbnail:
            return self._get(self.key(sha256))
        try:
            data = self._get(self.key(sha256, thumbnail=True))
        except FileNotFoundError:
            data = b""
        if looks_whole(data):
            return data
        data = make_thumbnail(self._get(self.key(sha256)), self.thumbnail_side)
        self._put_thumbnail(sha256, data)
        return data

    def delete(self, sha256: str) -> None:
        keys = [{"Key": self.key(sha256)}, {"Key": self.key(sha256, thumbnail=True)}]
        answer = self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise ServiceUnavailable(f"the image store refused a delete: {first.get('Code')}")

    def shared_url(self, sha256: str, *, thumbnail: bool, ttl_s: int) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self.key(sha256, thumbnail=thumbnail),
            "ResponseContentType": "image/jpeg",
        }
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)

    def _put_thumbnail(self, sha256: str, data: bytes) -> None:
        self._call(
            "put_object", Bucket=self.bucket, Key=self.key(sha256, thumbnail=True), Body=data, ContentType="image/jpeg"
        )

    def _get(self, key: str) -> bytes:
        return self._call("get_object", Bucket=self.bucket, Key=key)["Body"].read()

    def _call(self, operation: str, **params: Any) -> dict:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(params.get("Key", "")) from exc
            raise ServiceUnavailable(f"the image store answered {code or 'an error'} to {operation}") from exc
        except BotoCoreError as exc:  # unreachable, timed out, retries exhausted
            raise ServiceUnavailable(f"the image store did not answer {operation}: {type(exc).__name__}") from exc


def make_client(settings: ImageSettings) -> Any:
    """A boto3 S3 client for these settings (unset credentials: boto3's default chain)."""
    config = Config(
        region_name=settings.region,
        signature_version="s3v4",  # presigned URLs too (botocore would sign those with v2, which R2 refuses)
        max_pool_connections=settings.max_connections,
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 4},
        s3={"addressing_style": settings.addressing_style},
        # Only the checksums we ask for (SHA-256 on originals): the CRC32 boto3 adds by default is
        # refused by some S3-compatible services.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret,
        config=config,
    )
