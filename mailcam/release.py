"""Firmware releases, host side: build one (mpy-cross + manifest + Ed25519 signature), make a key.

A release is every ``firmware/lib/mcam`` module compiled with mpy-cross (``boot.py`` and ``main.py``
are never replaced: they choose and recover the version that runs), ``FW_VERSION`` set to the
release's version, in one bundle whose manifest lists each file's size and SHA-256 and is signed with
the cloud's Ed25519 key (format: ``mcam.protocol``, "firmware release"). A device installs only a
bundle whose signature its provisioned key (``ota.key``) verifies.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcam import protocol

from provisioning.firmware import FIRMWARE_DIR, stage_firmware


class ReleaseError(ValueError):
    """A release cannot be built, or a release file is not acceptable (the message says why)."""


def new_key() -> tuple[bytes, str]:
    """(private key PEM, public key as 64 hex chars): the pair a cloud signs its releases with."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, public_hex(key)


def load_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError("the signing key is not an Ed25519 key")
    return key


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def build(
    version: str,
    key: Ed25519PrivateKey,
    *,
    mpy_cross: str,
    firmware_dir: Path = FIRMWARE_DIR,
    include_sim: bool = False,
) -> bytes:
    """The release file of ``firmware_dir`` as version ``version``, signed with ``key``."""
    if not protocol.valid_fw_version(version):
        raise ReleaseError(f"bad version {version!r}: 1-40 of A-Z a-z 0-9 . _ + -")
    with tempfile.TemporaryDirectory(prefix="mailcam-release-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(firmware_dir, src, ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
        init = src / "lib" / "mcam" / "__init__.py"
        text, n = re.subn(r'^FW_VERSION = ".*"$', f'FW_VERSION = "{version}"', init.read_text(), flags=re.M)
        if n != 1:
            raise ReleaseError(f"{init} has no FW_VERSION line to set")
        init.write_text(text)
        staged = stage_firmware(Path(tmp) / "out", mpy_cross=mpy_cross, include_sim=include_sim, firmware_dir=src)
        files = [(local, "mcam/" + remote.split("/")[-1]) for local, remote in staged if remote.startswith("lib/mcam/")]
        blobs = [local.read_bytes() for local, _ in files]
    entries = [(path, len(b), hashlib.sha256(b).hexdigest()) for (_, path), b in zip(files, blobs, strict=True)]
    line = protocol.encode_manifest(version, entries)
    bundle = line + b"\n" + b"".join(blobs)
    signature = key.sign(protocol.release_message(line)).hex()
    return protocol.encode_release_file(signature, bundle)
