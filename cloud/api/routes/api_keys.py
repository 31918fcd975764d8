"""Integration API keys: create (shown once), list, revoke. Keys cannot manage keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api import schemas as core_schemas
from cloud.api.deps import AccountUser, CtxDep, OwnedApiKey, SessionDep
from cloud.models import ApiKey
from cloud.notify import schemas as s
from cloud.services import api_keys

router = APIRouter(prefix="/api/keys", tags=["api keys"])


def _public(row: ApiKey) -> s.ApiKeyPublic:
    return s.ApiKeyPublic(id=row.id, name=row.name, scope=row.scope, prefix=row.prefix, created_at=row.created_at,
                          last_used_at=row.last_used_at, revoked_at=row.revoked_at)


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=s.ApiKeyCreated)
def create_key(body: s.ApiKeyCreate, user: AccountUser, session: SessionDep, ctx: CtxDep) -> s.ApiKeyCreated:
    """Create an API key for home automation; the key is shown only here."""
    row, key = api_keys.create(session, user, name=body.name, scope=body.scope, now=ctx.clock.now())
    return s.ApiKeyCreated(**_public(row).model_dump(), key=key)


@router.get("/", response_model=list[s.ApiKeyPublic])
def list_keys(user: AccountUser, session: SessionDep) -> list[s.ApiKeyPublic]:
    """My API keys (the keys themselves are never shown again)."""
    return [_public(row) for row in api_keys.list_keys(session, user)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"model": core_schemas.ErrorBody}})
def revoke_key(key: OwnedApiKey, session: SessionDep, ctx: CtxDep) -> None:
    """Revoke an API key; it stops working at once."""
    api_keys.revoke(session, key, ctx.clock.now())
