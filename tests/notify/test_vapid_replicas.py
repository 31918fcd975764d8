"""Issue 18: Web Push's VAPID key is one per deployment, not one per host.

Each replica made its own key file in its own data directory, so a browser subscribed through one
replica (with that replica's public key) was refused the pushes another replica signed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud.app import create_app
from cloud.context import AppContext
from cloud.models import ServerKey
from cloud.notify import vapid
from tests.cloudkit import make_settings

pytestmark = pytest.mark.db


def replica(tmp_path: Path, database_url: str, name: str, **overrides) -> AppContext:
    """A cloud process with its own data directory (its own disk) on the shared database."""
    return AppContext.build(make_settings(tmp_path / name, database_url, **overrides))


def public_key(ctx: AppContext) -> str:
    with TestClient(create_app(ctx=ctx)) as client:
        r = client.get("/api/notifications/webpush/key")
        assert r.status_code == 200, r.text
        return r.json()["public_key"]


def test_replicas_on_their_own_disks_serve_and_sign_with_one_key(tmp_path, database_url):
    a, b = replica(tmp_path, database_url, "a"), replica(tmp_path, database_url, "b")
    try:
        first = public_key(a)
        assert public_key(b) == first
        assert vapid.application_server_key(vapid.server_vapid(b)) == first  # what b's pushes are signed with
        assert not list(tmp_path.rglob("vapid_private.pem"))  # nothing per host
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_replicas_starting_together_agree_on_the_key_they_create(tmp_path, database_url):
    contexts = [replica(tmp_path, database_url, f"r{i}") for i in range(4)]
    keys: list[str] = []
    start = threading.Barrier(len(contexts))

    def first_use(ctx: AppContext) -> None:
        start.wait(timeout=30)
        keys.append(vapid.application_server_key(vapid.server_vapid(ctx)))

    threads = [threading.Thread(target=first_use, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert len(keys) == len(contexts) and len(set(keys)) == 1
        with contexts[0].sessions() as session:
            assert len(session.scalars(select(ServerKey)).all()) == 1
    finally:
        for ctx in contexts:
            ctx.engine.dispose()


def test_the_private_key_is_sealed_at_rest_under_the_server_secret(tmp_path, database_url):
    ctx = replica(tmp_path, database_url, "a")
    try:
        key = vapid.server_vapid(ctx)
        with ctx.sessions() as session:
            stored = session.scalars(select(ServerKey.value_sealed)).one()
        assert "PRIVATE KEY" not in stored and key.private_pem().decode() not in stored
        other_secret = replica(tmp_path, database_url, "b", secret_key="another-secret-" + "x" * 32)
        with pytest.raises(vapid.KeyUnreadable, match="secret"):
            vapid.server_vapid(other_secret)
        other_secret.engine.dispose()
    finally:
        ctx.engine.dispose()


def test_a_key_file_from_before_is_adopted_so_existing_browsers_keep_their_alerts(tmp_path, database_url):
    """An install that made data_dir/vapid_private.pem keeps that key (browsers subscribed with it)."""
    ctx = replica(tmp_path, database_url, "old-host")
    legacy = vapid.Vapid02()
    legacy.generate_keys()
    path = Path(ctx.settings.notify.vapid_key_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(legacy.private_pem())
    new_host = replica(tmp_path, database_url, "new-host")
    try:
        assert public_key(ctx) == vapid.application_server_key(legacy)
        assert public_key(new_host) == vapid.application_server_key(legacy)
    finally:
        ctx.engine.dispose()
        new_host.engine.dispose()


def test_a_key_in_the_settings_wins_and_nothing_is_stored(tmp_path, database_url):
    chosen = vapid.Vapid02()
    chosen.generate_keys()
    raw = chosen.private_key.private_numbers().private_value.to_bytes(32, "big")
    ctx = replica(tmp_path, database_url, "a")
    ctx.settings.notify.vapid_private_key = vapid.b64urlencode(raw)
    try:
        assert public_key(ctx) == vapid.application_server_key(chosen)
        with ctx.sessions() as session:
            assert session.scalars(select(ServerKey)).all() == []
    finally:
        ctx.engine.dispose()
