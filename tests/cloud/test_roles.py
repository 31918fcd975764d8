"""Roles and ownership: who may see or change a device, as one matrix (``cloud.services.access``).

One cloud for the whole module (accounts cost an argon2 hash each); every case that changes
something gets a photo of its own, so the cases do not depend on each other's order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.cloudkit import Account, capture_body, grant_installer, jpeg_bytes, make_settings, new_account

pytestmark = pytest.mark.db  # runs again on PostgreSQL in CI


@dataclass
class World:
    api: TestClient
    people: dict[str, Account | None]
    device_tokens: dict[str, str]  # serial → the token that posts its photos now


@pytest.fixture(scope="module")
def world(tmp_path_factory, _sqlite_template, _postgres) -> Iterator[World]:
    from cloud.app import create_app
    from cloud.context import AppContext

    tmp = tmp_path_factory.mktemp("roles")
    if _postgres is not None:
        _postgres.truncate()
        url = _postgres.url
    else:
        url = _sqlite_template.fresh(tmp / "mailcam.db")
    ctx = AppContext.build(make_settings(tmp, url))
    with TestClient(create_app(ctx=ctx)) as api:
        installer, owner = new_account(api, "fitter@example.com"), new_account(api, "home@example.com")
        other_installer, other_homeowner = new_account(api, "rival@example.com"), new_account(api, "nosy@example.com")
        grant_installer(api, installer)
        grant_installer(api, other_installer)
        tokens = {}
        for serial in ("unclaimed-box", "private-box", "shared-box"):
            reg = api.post("/api/devices/", json={"serial": serial}, headers=installer.headers)
            assert reg.status_code == 201, reg.text
            tokens[serial] = reg.json()["device_token"]
            if serial != "unclaimed-box":
                # A photo from before the claim: it is the owner's once the box is claimed.
                body = capture_body(serial, jpeg_bytes(seed=1), capture_id=f"{serial}-before-claim")
                assert api.post("/api/device/capture/", json=body, headers=_bearer(tokens[serial])).status_code == 200
                claim = api.post(
                    "/api/devices/claim/", json={"claim_code": reg.json()["claim_code"]}, headers=owner.headers
                )
                assert claim.status_code == 200, claim.text
                tokens[serial] = claim.json()["device_token"]
        allowed = api.patch("/api/devices/shared-box/", json={"installer_access": True}, headers=owner.headers)
        assert allowed.status_code == 200 and allowed.json()["installer_access"] is True
        people = {
            "owner": owner,
            "installer": installer,
            "other_installer": other_installer,
            "other_homeowner": other_homeowner,
            "anonymous": None,
        }
        yield World(api, people, tokens)
    ctx.engine.dispose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_photo_seeds = itertools.count(100)


def _new_photo(world: World, serial: str) -> str:
    seed = next(_photo_seeds)
    body = capture_body(serial, jpeg_bytes(seed=seed), capture_id=f"{serial}-{seed}")
    response = world.api.post("/api/device/capture/", json=body, headers=_bearer(world.device_tokens[serial]))
    assert response.status_code == 200, response.text
    return response.json()["capture_id"]


def _act(world: World, what: str, serial: str, headers: dict[str, str]) -> int:
    api = world.api
    # A fresh photo: the one to act on, and for a trigger a box just heard from (online: 200, not 202
    # "queued"), whichever of these cases ran before on this worker.
    capture_id = _new_photo(world, serial) if what in ("image", "reference", "delete", "trigger") else None
    requests = {
        "read": lambda: api.get(f"/api/devices/{serial}/", headers=headers),
        "captures": lambda: api.get(f"/api/devices/{serial}/captures/", headers=headers),
        "image": lambda: api.get(f"/api/captures/{capture_id}/image", headers=headers),
        "settings": lambda: api.get(f"/api/devices/{serial}/settings", headers=headers),
        "change_settings": lambda: api.put(
            f"/api/devices/{serial}/settings", json={"settings": {"door.level": 1}}, headers=headers
        ),
        "trigger": lambda: api.post("/api/device/trigger/", json={"device_serial": serial}, headers=headers),
        "reference": lambda: api.post(f"/api/captures/{capture_id}/reference", headers=headers),
        "delete": lambda: api.delete(f"/api/captures/{capture_id}", headers=headers),
    }
    response = requests[what]()
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "detail"}, response.text
    return response.status_code


OK = {
    "read": 200,
    "captures": 200,
    "image": 200,
    "settings": 200,
    "change_settings": 200,
    "trigger": 200,
    "reference": 201,
    "delete": 204,
}
READ_ONLY = {
    "read": 200,
    "captures": 200,
    "image": 200,
    "settings": 200,
    "change_settings": 403,
    "trigger": 403,
    "reference": 403,
    "delete": 403,
}
HIDDEN = dict.fromkeys(OK, 404)
ANONYMOUS = dict.fromkeys(OK, 401)

# who (and the device their case is about) → what they get for each action
MATRIX = {
    ("owner", "private-box"): OK,
    ("installer", "unclaimed-box"): OK,  # before the claim: everything installing needs
    ("installer", "private-box"): HIDDEN,  # after the claim, the owner did not allow it
    ("installer", "shared-box"): READ_ONLY,  # after the claim, the owner allows a look
    ("other_installer", "unclaimed-box"): HIDDEN,
    ("other_installer", "shared-box"): HIDDEN,
    ("other_homeowner", "unclaimed-box"): HIDDEN,
    ("other_homeowner", "shared-box"): HIDDEN,
    ("anonymous", "shared-box"): ANONYMOUS,
}
CASES = [(who, serial, what, expected[what]) for (who, serial), expected in MATRIX.items() for what in OK]


@pytest.mark.parametrize(("who", "serial", "what", "expected"), CASES, ids=[f"{w}-{s}-{a}" for w, s, a, _ in CASES])
def test_who_may_do_what_with_a_device(world: World, who: str, serial: str, what: str, expected: int) -> None:
    person = world.people[who]
    assert _act(world, what, serial, person.headers if person else {}) == expected


def test_each_person_lists_exactly_the_devices_they_may_see(world: World) -> None:
    def listed(who: str) -> dict[str, str]:
        rows = world.api.get("/api/devices/", headers=world.people[who].headers).json()
        return {row["serial"]: row["access"] for row in rows}

    assert listed("owner") == {"private-box": "owner", "shared-box": "owner"}
    assert listed("installer") == {"unclaimed-box": "installer", "shared-box": "read_only"}
    assert listed("other_installer") == {} and listed("other_homeowner") == {}


def test_photos_sent_before_the_claim_are_the_owners(world: World) -> None:
    page = world.api.get("/api/devices/private-box/captures/?limit=100", headers=world.people["owner"].headers)
    assert "private-box-before-claim" in {c["capture_id"] for c in page.json()["items"]}


def test_a_homeowner_cannot_register_a_device(world: World) -> None:
    response = world.api.post("/api/devices/", json={"serial": "diy-box"}, headers=world.people["owner"].headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden" and "mailcam set-role" in response.json()["detail"]
    assert world.api.get("/api/devices/diy-box/", headers=world.people["owner"].headers).status_code == 404


def test_serials_are_unique_whatever_the_case_and_reserved_names_are_refused(world: World) -> None:
    headers = world.people["other_installer"].headers
    for serial in ("UNCLAIMED-BOX", "private-box", "mailcam-gateway", "Mosquitto"):
        response = world.api.post("/api/devices/", json={"serial": serial}, headers=headers)
        assert response.status_code == 409, serial


def test_only_the_owner_grants_or_revokes_the_installers_look(world: World) -> None:
    owner, installer = world.people["owner"].headers, world.people["installer"].headers
    api = world.api
    refused = api.patch("/api/devices/shared-box/", json={"installer_access": False}, headers=installer)
    assert refused.status_code == 403
    assert (
        api.patch("/api/devices/unclaimed-box/", json={"installer_access": True}, headers=installer).status_code == 403
    )
    assert api.patch("/api/devices/private-box/", json={"installer_access": True}, headers=owner).status_code == 200
    assert api.get("/api/devices/private-box/", headers=installer).status_code == 200
    assert api.patch("/api/devices/private-box/", json={"installer_access": False}, headers=owner).status_code == 200
    assert api.get("/api/devices/private-box/", headers=installer).status_code == 404  # revoked at once
