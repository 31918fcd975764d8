"""Dependency shortcuts: the context, a session, who is calling, and what of theirs a request is about.

Ownership has one rule, kept here: a row that does not exist and one that is not the caller's look
the same (404). Every ``Owned…`` dependency below applies it; routes take the dependency, never
repeat the check. Devices (and their captures) have levels (``cloud.services.access``): ``Owned…``
for the owner, ``Managed…`` also for the installer until the claim, ``Visible…`` also for the
installer's read-only view the owner allows (a change through it is 403, not 404).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cloud.api.schemas import IdPath, RowId, SerialPath
from cloud.context import AppContext
from cloud.db import read_only_transaction
from cloud.errors import Forbidden, NotAuthenticated, NotFound
from cloud.models import ApiKey, Capture, Device, Gateway, PushToken, Role, User, Webhook
from cloud.services import access, accounts, api_keys, captures, devices, gateways
from cloud.services.access import Access

_bearer = HTTPBearer(
    auto_error=False, description="`mcu_…` user token, `mck_…` API key, `mcd_…` device or `mcg_…` gateway token"
)


async def get_ctx(request: Request) -> AppContext:  # async: no thread hop for a lookup
    return request.app.state.ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    """The request's session. Services flush; this boundary commits, once the handler has returned
    and before the response is sent (``scope="function"``), so a 2xx always means committed. An
    error rolls everything back. A service commits early only where its transaction must end
    before slow or outside work, and its docstring says so (ingest, confirmations, retention, the
    login and API-key counters)."""
    with ctx.sessions() as session:
        yield session
        session.commit()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def bearer_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if creds is None or not creds.credentials:
        raise NotAuthenticated("missing bearer token")
    return creds.credentials


TokenDep = Annotated[str, Depends(bearer_token)]
# For a route with a second way in (the event stream's ticket): the header when there is one.
OptionalBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_user(request: Request, session: SessionDep, ctx: CtxDep, token: TokenDep) -> User:
    if api_keys.is_api_key(token):
        # Scope and rate limit are checked (and counted) in their own transaction, before ours begins.
        caller = api_keys.authenticate(ctx, token, method=request.method, path=request.url.path)
        user = session.get(User, caller.user_id)
        if user is None:
            raise NotAuthenticated("invalid or revoked API key")
        request.state.api_key = caller
        return user
    return accounts.user_for_token(session, token, ctx.clock.now())


CurrentUser = Annotated[User, Depends(current_user)]


def account_user(session: SessionDep, ctx: CtxDep, token: TokenDep) -> User:
    """The caller logged in as themselves: endpoints about the account refuse integration API keys."""
    if api_keys.is_api_key(token):
        raise Forbidden("this endpoint needs a user login, not an API key")
    return accounts.user_for_token(session, token, ctx.clock.now())


AccountUser = Annotated[User, Depends(account_user)]


# --- ownership -----------------------------------------------------------------------------------

Row = TypeVar("Row")


def _theirs(row: Row | None, owner_id: int | None, user: User, what: str, **context: object) -> Row:
    if row is None or owner_id != user.id:
        raise NotFound(f"no such {what}", **context)
    return row


def _device(session: Session, user: User, serial: str, need: Access) -> Device:
    return access.require(devices.by_serial(session, serial), user, need, device_serial=serial)


def owned_device(session: SessionDep, user: CurrentUser, serial: SerialPath) -> Device:
    """The caller's device (also called directly where the serial comes in a body or query)."""
    return _device(session, user, serial, Access.OWNER)


def account_device(session: SessionDep, user: AccountUser, serial: SerialPath) -> Device:
    return owned_device(session, user, serial)


def managed_device(session: SessionDep, user: CurrentUser, serial: SerialPath) -> Device:
    """A device I own, or that I registered as its installer and nobody has claimed yet."""
    return _device(session, user, serial, Access.MANAGE)


def visible_device(session: SessionDep, user: CurrentUser, serial: SerialPath) -> Device:
    """A device I may look at: managed, or its installer's read-only view the owner allows."""
    return _device(session, user, serial, Access.READ)


def _capture(session: Session, user: User, capture_id: str, need: Access) -> tuple[Capture, Device]:
    found = captures.with_device(session, capture_id)
    access.require(found[1] if found else None, user, need, what="capture", capture_id=capture_id)
    assert found is not None
    return found


def owned_capture(session: SessionDep, user: CurrentUser, capture_id: IdPath) -> tuple[Capture, Device]:
    return _capture(session, user, capture_id, Access.OWNER)


def managed_capture(session: SessionDep, user: CurrentUser, capture_id: IdPath) -> tuple[Capture, Device]:
    """A capture of a device I manage (owner, or its installer until the claim)."""
    return _capture(session, user, capture_id, Access.MANAGE)


def visible_capture(session: SessionDep, user: CurrentUser, capture_id: IdPath) -> tuple[Capture, Device]:
    """A capture of a device I may look at."""
    return _capture(session, user, capture_id, Access.READ)


def installer_user(user: CurrentUser) -> User:
    """The caller, if an operator made them an installer: only installers register devices."""
    if user.role != Role.INSTALLER:
        raise Forbidden(
            "registering devices needs the installer role; an operator grants it with "
            "`mailcam set-role EMAIL installer`",
            role=user.role.value,
        )
    return user


def _users_row(session: Session, model: type[Row], row_id: int, user: User, what: str, **context: object) -> Row:
    row = session.get(model, row_id)
    return _theirs(row, row.user_id if row else None, user, what, **context)


def owned_gateway(session: SessionDep, user: AccountUser, gateway_id: RowId) -> Gateway:
    gateway = session.get(Gateway, gateway_id)
    return _theirs(gateway, gateway.owner_id if gateway else None, user, "gateway", gateway_id=gateway_id)


def owned_webhook(session: SessionDep, user: AccountUser, webhook_id: RowId) -> Webhook:
    return _users_row(session, Webhook, webhook_id, user, "webhook", webhook_id=webhook_id)


def owned_push_token(session: SessionDep, user: AccountUser, token_id: RowId) -> PushToken:
    return _users_row(session, PushToken, token_id, user, "push token", token_id=token_id)


def owned_api_key(session: SessionDep, user: AccountUser, key_id: RowId) -> ApiKey:
    return _users_row(session, ApiKey, key_id, user, "API key", key_id=key_id)


OwnedDevice = Annotated[Device, Depends(owned_device)]
# The same device, for endpoints about its credentials: integration API keys are refused.
AccountDevice = Annotated[Device, Depends(account_device)]
OwnedCapture = Annotated[tuple[Capture, Device], Depends(owned_capture)]
ManagedCapture = Annotated[tuple[Capture, Device], Depends(managed_capture)]
VisibleCapture = Annotated[tuple[Capture, Device], Depends(visible_capture)]
ManagedDevice = Annotated[Device, Depends(managed_device)]
VisibleDevice = Annotated[Device, Depends(visible_device)]
InstallerUser = Annotated[User, Depends(installer_user)]
OwnedGateway = Annotated[Gateway, Depends(owned_gateway)]
OwnedWebhook = Annotated[Webhook, Depends(owned_webhook)]
OwnedPushToken = Annotated[PushToken, Depends(owned_push_token)]
OwnedApiKey = Annotated[ApiKey, Depends(owned_api_key)]


@dataclass(frozen=True)
class DeviceCaller:
    """A device (acting for itself) or a gateway (acting for the devices its owner manages: their own,
    and those they registered as installer that nobody has claimed yet, ``cloud.services.access``)."""

    device: Device | None = None
    gateway: Gateway | None = None

    def device_for(self, session: Session, serial: str) -> Device:
        if self.device is not None:
            if self.device.serial != serial:
                raise Forbidden("a device may only act for itself", device_serial=serial)
            return self.device
        assert self.gateway is not None
        device = session.scalar(_MANAGED_BY_SERIAL, {"serial": serial, "user_id": self.gateway.owner_id})
        if device is None:
            raise NotFound("unknown device", device_serial=serial)
        return device

    def device_ids(self, session: Session) -> list[int]:
        if self.device is not None:
            return [self.device.id]
        assert self.gateway is not None
        return list(session.scalars(select(Device.id).where(access.managed_by(self.gateway.owner_id))))


# Built once: building and keying the clauses cost more than running them (a gateway's call per wake).
_MANAGED_BY_SERIAL = select(Device).where(Device.serial == bindparam("serial"),
                                          access.managed_by(bindparam("user_id")))


def _authenticate_device_caller(session: Session, token: str) -> DeviceCaller:
    # The table the token's prefix names first: one lookup per request, a second only for a bad token.
    lookups = (_as_gateway, _as_device) if gateways.is_gateway_token(token) else (_as_device, _as_gateway)
    for lookup in lookups:
        caller = lookup(session, token)
        if caller is not None:
            return caller
    raise NotAuthenticated("invalid device or gateway token")


def _as_device(session: Session, token: str) -> DeviceCaller | None:
    device = devices.device_for_token(session, token)
    return DeviceCaller(device=device) if device is not None else None


def _as_gateway(session: Session, token: str) -> DeviceCaller | None:
    gateway = gateways.gateway_for_token(session, token)
    return DeviceCaller(gateway=gateway) if gateway is not None else None


def device_caller(session: SessionDep, ctx: CtxDep, token: TokenDep) -> DeviceCaller:
    caller = _authenticate_device_caller(session, token)
    if caller.gateway is not None:
        caller.gateway.last_seen_at = ctx.clock.now()
    return caller


DeviceCallerDep = Annotated[DeviceCaller, Depends(device_caller)]


def ingest_caller(session: Session, token: str) -> DeviceCaller:
    """`device_caller` for capture ingest: authenticated in a read-only transaction, which on SQLite
    waits for no writer (``cloud.db.read_only_transaction``; ingest commits it before it writes).
    It writes nothing, so a gateway's ``last_seen_at`` is set by ingest, with the capture's rows.
    Called by the capture route inside its one worker-thread call, not as a dependency."""
    read_only_transaction(session)
    return _authenticate_device_caller(session, token)


def device_caller_for(session: Session, token: str) -> DeviceCaller:
    """`device_caller` inside a route's one worker-thread call (telemetry, uploads), not as a dependency:
    it marks nothing seen (the route does, with one UPDATE once the device is known)."""
    return _authenticate_device_caller(session, token)


def gateway_caller(caller: DeviceCallerDep) -> Gateway:
    if caller.gateway is None:
        raise Forbidden("this endpoint is for gateways")
    return caller.gateway


GatewayDep = Annotated[Gateway, Depends(gateway_caller)]


def gateway_device(session: SessionDep, gateway: GatewayDep, serial: SerialPath) -> Device:
    """A device of the gateway's owner (the gateway acts for them): not found or not theirs → 404."""
    return DeviceCaller(gateway=gateway).device_for(session, serial)


GatewayDevice = Annotated[Device, Depends(gateway_device)]
