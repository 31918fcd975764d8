"""The local image folder: ``<root>/<sha[:2]>/<sha>.jpg`` and ``….thumb.jpg``.

Durability: the original is written to a temporary name, fsynced, then renamed into place. The
directory is fsynced after the rename, so the new name itself survives a power loss (a rename is
durable only once its directory is). The thumbnail is written the same atomic way but not fsynced
(one fsync less per capture): after a power loss it may be missing or torn, and ``read`` rebuilds
it from the original, which is what a lost cache costs.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from cloud.imagestore import object_name
from cloud.services.images import looks_whole, make_thumbnail

_tmp_names = itertools.count()


class FolderImageStore:
    def __init__(self, root: Path, *, thumbnail_side: int = 320) -> None:
        self.root = Path(root)
        self.thumbnail_side = thumbnail_side

    def path(self, sha256: str, *, thumbnail: bool = False) -> Path:
        return self.root / object_name(sha256, thumbnail=thumbnail)

    def put(self, sha256: str, data: bytes, thumbnail: bytes | None) -> None:
        self._write_once(self.path(sha256), data, durable=True)
        if thumbnail is not None:
            self._write_once(self.path(sha256, thumbnail=True), thumbnail, durable=False)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def read(self, sha256: str, *, thumbnail: bool = False) -> bytes:
        if not thumbnail:
            return self.path(sha256).read_bytes()
        path = self.path(sha256, thumbnail=True)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        if looks_whole(data):
            return data
        # Lost or torn in a crash (it is written without fsync), or never made: rebuild it.
        data = make_thumbnail(self.path(sha256).read_bytes(), self.thumbnail_side)
        path.unlink(missing_ok=True)
        self._write_once(path, data, durable=False)
        return data

    def delete(self, sha256: str) -> None:
        for thumb in (False, True):
            self.path(sha256, thumbnail=thumb).unlink(missing_ok=True)

    def shared_url(self, sha256: str, *, thumbnail: bool, ttl_s: int) -> str | None:
        return None  # a folder has no URL of its own: the API serves its bytes

    def _write_once(self, path: Path, data: bytes, *, durable: bool) -> None:
        if path.exists():
            return
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            if durable:
                _fsync_dir(self.root)  # the new shard folder's own name
        tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{next(_tmp_names)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
