"""Where the image files live: ``MAILCAM_IMAGES__*``.

No URL (the default): the local folder ``image_dir`` (``data_dir/images``), for one machine.
``s3://bucket/prefix``: an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Garage), which
every replica shares. Credentials left unset come from boto3's own chain (``AWS_*`` variables,
``~/.aws``, an instance role).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator


class ImageSettings(BaseModel):
    url: str | None = Field(default=None, description="s3://bucket/prefix; unset = the local image folder")
    endpoint_url: str | None = Field(default=None, description="for S3-compatible services other than AWS")
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # api: the API reads the object and answers with its bytes (as for the folder).
    # presigned: the API checks ownership, then redirects (307) to a URL valid for presign_ttl_s.
    serve: Literal["api", "presigned"] = "api"
    presign_ttl_s: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    max_connections: int = Field(default=32, ge=1, description="HTTP connections to the bucket, per process")

    @field_validator("url")
    @classmethod
    def _s3_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith("s3://"):
            raise ValueError("MAILCAM_IMAGES__URL must look like s3://bucket/prefix (unset for the local folder)")
        if url is not None and not url.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError("MAILCAM_IMAGES__URL names no bucket")
        return url
