"""Copy an image folder into a bucket (``mailcam images migrate``): resumable, verified, in parallel.

Resumable: the bucket's keys are listed first and what is already there is skipped. An S3 PUT is
atomic (an object is there whole or not at all), so a copy interrupted at any point is finished
by running it again. Verified: an original's name is its SHA-256; a file whose bytes do not hash
to its name (damaged on disk) is reported and not copied, and the rest is still sent with that
SHA-256 for the service to check. Thumbnails are copied when present (a missing one is rebuilt on
first read). The folder is left as it is: delete it yourself once the cloud runs on the bucket.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cloud.imagestore import object_name
from cloud.imagestore.s3 import S3ImageStore

_ORIGINAL = re.compile(r"^[0-9a-f]{64}\.jpg$")


@dataclass
class CopyReport:
    copied: int = 0
    already_there: int = 0
    damaged: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def originals(folder: Path) -> Iterator[Path]:
    """Every original in the folder (``ab/ab….jpg``), not thumbnails or leftover temporary files."""
    for shard in sorted(p for p in folder.iterdir() if p.is_dir() and len(p.name) == 2):
        for path in sorted(shard.iterdir()):
            if _ORIGINAL.match(path.name) and path.name.startswith(shard.name):
                yield path


def keys_in_bucket(store: S3ImageStore) -> set[str]:
    """Every key under the store's prefix (one LIST page per 1000 keys)."""
    paginator = store.client.get_paginator("list_objects_v2")
    keys: set[str] = set()
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def copy_folder(
    folder: Path, store: S3ImageStore, *, workers: int = 8, progress: Callable[[int, int], None] | None = None
) -> CopyReport:
    """Copy what the bucket lacks; ``progress(files_done, bytes_done)`` after each original."""
    present = keys_in_bucket(store)
    report = CopyReport()
    todo: list[Path] = []
    for path in originals(folder):
        sha = path.name.removesuffix(".jpg")
        has_thumb = (folder / object_name(sha, thumbnail=True)).exists()
        thumb_missing = has_thumb and store.key(sha, thumbnail=True) not in present
        if store.key(sha) in present and not thumb_missing:
            report.already_there += 1
            if progress:
                progress(1, path.stat().st_size)
        else:
            todo.append(path)

    def copy_one(path: Path) -> tuple[Path, int | None]:
        sha = path.name.removesuffix(".jpg")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            return path, None
        thumb_path = folder / object_name(sha, thumbnail=True)
        thumbnail = thumb_path.read_bytes() if thumb_path.exists() else None
        # The thumbnail goes last: a present original with its thumbnail means this file is done.
        store.put(sha, data, thumbnail)
        return path, len(data)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-copy") as pool:
        for path, size in pool.map(copy_one, todo):
            if size is None:
                report.damaged.append(str(path))
            else:
                report.copied += 1
                report.bytes_copied += size
            if progress:
                progress(1, size or 0)
    return report
