"""Defaults that reach a person: push and Apprise on out of the box, the console only outside production."""

from __future__ import annotations

from cloud.notify import kinds, registry
from cloud.settings import Settings


def test_console_channel_is_for_development_only(tmp_path):
    dev = Settings(data_dir=tmp_path)
    prod = Settings(data_dir=tmp_path, environment="production", secret_key="a-real-secret-for-this-test")
    assert kinds.CONSOLE in registry.available(dev.notify)
    assert kinds.CONSOLE not in registry.available(prod.notify)
    # A new user's alerts reach their browsers and apps with no operator setup.
    assert {kinds.WEBPUSH, kinds.APPRISE} <= set(registry.available(prod.notify))
    assert prod.notify.vapid_key_file == str(tmp_path / "vapid_private.pem")
