"""Accounts: registration, login, profile."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cloud.api import schemas
from cloud.api.deps import AccountUser, CtxDep, SessionDep, TokenDep
from cloud.errors import RateLimited
from cloud.models import User
from cloud.services import accounts, clicks, login_limits

router = APIRouter(prefix="/api", tags=["users"])
_err = {"model": schemas.ErrorBody}
_errors = {401: _err, 403: _err}


def _public(user: User, ctx: CtxDep) -> schemas.UserPublic:
    tier = accounts.effective_tier(user, ctx.clock.now())
    return schemas.UserPublic(id=user.id, email=user.email, name=user.name, timezone=user.timezone, tier=tier.value,
                              role=user.role.value)


@router.post(
    "/users/",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.UserPublic,
    responses={409: {"model": schemas.ErrorBody}, 429: {"model": schemas.ErrorBody}},
)
def register(body: schemas.UserCreate, session: SessionDep, ctx: CtxDep) -> schemas.UserPublic:
    """Create an account."""
    user = accounts.create_user(
        session,
        email=body.email,
        password=body.password,
        now=ctx.clock.now(),
        name=body.name,
        timezone=body.timezone,
    )
    return _public(user, ctx)


@router.post(
    "/auth/token/",
    response_model=schemas.TokenOut,
    responses={401: {"model": schemas.ErrorBody}, 429: {"model": schemas.ErrorBody}},
)
def login(body: schemas.LoginIn, request: Request, session: SessionDep, ctx: CtxDep) -> schemas.TokenOut:
    """Log in with email and password; returns a bearer token."""
    # Counted before the password is checked (its own transaction); a wrong password leaves it counted.
    attempt = login_limits.reserve(ctx, email=body.email, address=request.client.host if request.client else "")
    try:
        token, row = accounts.login(
            session, email=body.email, password=body.password, now=ctx.clock.now(), ttl_s=ctx.settings.user_token_ttl_s
        )
    except RateLimited:  # no free hashing slot: the password was not checked
        session.rollback()  # first: on SQLite the open transaction holds the process's writer gate
        login_limits.not_checked(ctx, attempt)
        raise
    session.commit()  # first: the counter below has its own transaction, and ours holds SQLite's writer gate
    login_limits.succeeded(ctx, attempt)
    return schemas.TokenOut(access_token=token, expires_at=row.expires_at)


@router.delete("/auth/token/", status_code=status.HTTP_204_NO_CONTENT)
def logout(session: SessionDep, user: AccountUser, token: TokenDep) -> None:
    """Revoke the token used for this request."""
    accounts.logout(session, token)


@router.delete("/auth/tokens/", status_code=status.HTTP_204_NO_CONTENT, responses=_errors)
def logout_everywhere(session: SessionDep, user: AccountUser) -> None:
    """Log out everywhere: revoke every login token of mine, this one included."""
    accounts.logout_everywhere(session, user)


@router.post("/users/me/password/", response_model=schemas.TokenOut, responses={**_errors, 422: _err})
def change_password(
    body: schemas.PasswordChange, session: SessionDep, user: AccountUser, ctx: CtxDep
) -> schemas.TokenOut:
    """Change my password; every other session is logged out, this one gets a new token."""
    token, row = accounts.change_password(
        session, user, current=body.current_password, new=body.new_password, now=ctx.clock.now(),
        ttl_s=ctx.settings.user_token_ttl_s,
    )
    return schemas.TokenOut(access_token=token, expires_at=row.expires_at)


@router.get("/users/me/", response_model=schemas.UserPublic)
def me(user: AccountUser, ctx: CtxDep) -> schemas.UserPublic:
    """The caller's account."""
    return _public(user, ctx)


@router.patch("/users/me/", response_model=schemas.UserPublic)
def update_me(body: schemas.UserUpdate, user: AccountUser, session: SessionDep, ctx: CtxDep) -> schemas.UserPublic:
    """Change the caller's name or timezone."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "timezone" in changes and changes["timezone"] != user.timezone:
        clicks.carry_over(session, user.id, user.timezone, changes["timezone"], ctx.clock.now())
    for field, value in changes.items():
        setattr(user, field, value)
    return _public(user, ctx)
