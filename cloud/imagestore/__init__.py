"""The image store: where originals and thumbnails live, by SHA-256 (content addressed).

    ImageStore (the interface every caller uses, ``ctx.images``)
    ├── FolderImageStore   the local folder, the embedded default (``folder.py``)
    └── S3ImageStore       an S3-compatible bucket shared by replicas (``s3.py``)

The promise both keep, which ingest builds on (``cloud/services/ingest.py``):

* ``put`` returns only once the original is durable (folder: fsynced and renamed; S3: the PUT
  answered success, and S3 never stores a partial object). So an acknowledged capture's image is
  stored before the 200. The thumbnail is derived data, made off the request path:
  ``read(thumbnail=True)`` makes it from the original on first use (and again if a crash tore it)
  and keeps it.
* Keys are the image's SHA-256: putting the same bytes twice stores them once, and a retry after
  a crash between the put and the database commit finds them already there.
* A missing image is ``FileNotFoundError`` from ``read``, whatever the backend.
* Who may delete a file shared by captures is decided in the database (``hold_image``); the store
  only does what it is told.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cloud.imagestore.config import ImageSettings


class ImageStore(Protocol):
    def put(self, sha256: str, data: bytes, thumbnail: bytes | None) -> None:
        """Store the original durably before returning, and its thumbnail (when given)."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the original is stored."""
        ...

    def read(self, sha256: str, *, thumbnail: bool = False) -> bytes:
        """The original or its thumbnail (rebuilt when missing); ``FileNotFoundError`` if gone."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the original and its thumbnail (no error when already gone)."""
        ...

    def shared_url(self, sha256: str, *, thumbnail: bool, ttl_s: int) -> str | None:
        """A URL a browser can fetch the image from for ``ttl_s`` seconds, or None (served by the API)."""
        ...


def open_image_store(settings: ImageSettings, folder: Path, *, thumbnail_side: int) -> ImageStore:
    """The store the settings name: the bucket of ``settings.url``, else ``folder``."""
    if settings.url:
        from cloud.imagestore.s3 import S3ImageStore  # boto3 is imported only when a bucket is used

        return S3ImageStore.from_settings(settings, thumbnail_side=thumbnail_side)
    from cloud.imagestore.folder import FolderImageStore

    return FolderImageStore(folder, thumbnail_side=thumbnail_side)


def object_name(sha256: str, *, thumbnail: bool = False) -> str:
    """The relative name of an image in every store: ``ab/abcd….jpg`` and ``ab/abcd….thumb.jpg``."""
    return f"{sha256[:2]}/{sha256}.thumb.jpg" if thumbnail else f"{sha256[:2]}/{sha256}.jpg"


__all__ = ["ImageSettings", "ImageStore", "object_name", "open_image_store"]
