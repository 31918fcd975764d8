"""Dependency shortcuts: the context, a session, and who is calling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.schemas import SerialPath
from cloud.context import AppContext
from cloud.errors import Forbidden, NotAuthenticated, NotFound
from cloud.models import Device, Gateway, User
from cloud.services import accounts, api_keys, devices

_bearer = HTTPBearer(
    auto_error=False, description="`mcu_…` user token, `mck_…` API key, `mcd_…` device or `mcg_…` gateway token"
)


async def get_ctx(request: Request) -> AppContext:  # async: no thread hop for a lookup
    return request.app.state.ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    # Handlers commit explicitly; anything left uncommitted (an error) is rolled back here.
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def bearer_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if creds is None or not creds.credentials:
        raise NotAuthenticated("missing bearer token")
    return creds.credentials


TokenDep = Annotated[str, Depends(bearer_token)]


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


def owned_device(session: SessionDep, user: CurrentUser, serial: SerialPath) -> Device:
    return devices.owned_device(session, user, serial)


OwnedDevice = Annotated[Device, Depends(owned_device)]


@dataclass(frozen=True)
class DeviceCaller:
    """A device (acting for itself) or a gateway (acting for its owner's devices)."""

    device: Device | None = None
    gateway: Gateway | None = None

    def device_for(self, session: Session, serial: str) -> Device:
        if self.device is not None:
            if self.device.serial != serial:
                raise Forbidden("a device may only act for itself", device_serial=serial)
            return self.device
        assert self.gateway is not None
        device = session.scalar(select(Device).where(Device.serial == serial))
        if device is None or device.owner_id != self.gateway.owner_id:
            raise NotFound("unknown device", device_serial=serial)
        return device

    def device_ids(self, session: Session) -> list[int]:
        if self.device is not None:
            return [self.device.id]
        assert self.gateway is not None
        return list(session.scalars(select(Device.id).where(Device.owner_id == self.gateway.owner_id)))


def device_caller(session: SessionDep, ctx: CtxDep, token: TokenDep) -> DeviceCaller:
    device = devices.device_for_token(session, token)
    if device is not None:
        return DeviceCaller(device=device)
    gateway = devices.gateway_for_token(session, token)
    if gateway is not None:
        gateway.last_seen_at = ctx.clock.now()
        return DeviceCaller(gateway=gateway)
    raise NotAuthenticated("invalid device or gateway token")


DeviceCallerDep = Annotated[DeviceCaller, Depends(device_caller)]


def gateway_caller(caller: DeviceCallerDep) -> Gateway:
    if caller.gateway is None:
        raise Forbidden("this endpoint is for gateways")
    return caller.gateway


GatewayDep = Annotated[Gateway, Depends(gateway_caller)]
