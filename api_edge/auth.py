"""Who is calling: OAuth2 password flow issuing short-lived JWTs (HS256, pinned), and API keys for
machines. Every route declares the role it needs with `Depends(require(...))`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import anyio
import anyio.to_thread
import jwt
from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from api_edge import principals
from api_edge.problems import Problem
from api_edge.state import clients
from db import auth_repo
from infra.credentials import ROLES, Role, digest_matches, split_api_key, valid_username, verify_password
from infra.settings import Settings

LOGINS_AT_ONCE = 2  # argon2 verifications in threads at once (each holds 64 MiB while it runs)
ALGORITHM = "HS256"  # pinned: the token's own header never chooses the algorithm
MAX_TOKEN_BYTES = 4096
KNOWN = frozenset(ROLES)

_bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # "user:alice" or "key:<key_id>"
    roles: frozenset[str]
    auth_time: int = 0  # when the password was checked (epoch s): refresh never goes past max age from it

    def has(self, role: Role) -> bool:
        # admin may do everything; every known role may read.
        return "admin" in self.roles or role in self.roles or (role == "viewer" and bool(self.roles & KNOWN))


class Token(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"access_token": "eyJhbGciOi...", "token_type": "bearer", "expires_in": 900}]
        }
    )

    access_token: str
    token_type: str = "bearer"
    expires_in: int


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "Not authenticated",
        detail,
        type_="/problems/unauthenticated",
        headers={"WWW-Authenticate": "Bearer"},
    )


# Token answers are credentials: no browser, proxy or CDN may keep them.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issue_token(settings: Settings, subject: str, roles: list[str], auth_time: int) -> Token:
    """An access token; it never outlives the login (`auth_time` + INVMON_LOGIN_MAX_AGE_S)."""
    now = int(time.time())
    exp = min(now + settings.jwt_ttl_s, auth_time + settings.login_max_age_s)
    claims = {
        "sub": subject,
        "roles": roles,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "auth_time": auth_time,
    }
    token = jwt.encode(claims, settings.jwt_key(), algorithm=ALGORITHM)
    return Token(access_token=token, expires_in=exp - now)


_VERIFIED_MAX = 10_000
# A verified token's principal and expiry, by (token, secret, audience, issuer): the same token is checked
# once, not on every request (HMAC + claims cost more CPU than the rest of authentication). Bounded: when
# full, the oldest entries go. An entry is used only before the token's `exp`, so expiry still holds.
_verified: dict[tuple[str, str, str, str], tuple[Principal, int]] = {}


def decode_token(request: HTTPConnection, token: str) -> Principal:
    principal, _ = decode_access_token(clients(request).settings, token)
    return principal


def decode_access_token(settings: Settings, token: str) -> tuple[Principal, int]:
    """The principal of a valid access token and its expiry (epoch seconds); 401 problem otherwise,
    also when the principal was deactivated (api_edge.principals)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise _unauthorized("token too large")
    secret = settings.jwt_key()
    cache_key = (token, secret, settings.jwt_audience, settings.jwt_issuer)
    verified = _verified.get(cache_key)
    if verified is None or time.time() >= verified[1]:
        verified = _verify(settings, token, secret)
        if len(_verified) >= _VERIFIED_MAX:
            for stale in list(_verified)[: _VERIFIED_MAX // 10]:  # dicts keep insertion order: oldest first
                del _verified[stale]
        _verified[cache_key] = verified
    # Checked on every use, cached or not: a deactivation reaches tokens that were verified before it.
    if not principals.status.active(verified[0].subject, verified[0].auth_time):
        raise _unauthorized("the principal is deactivated")
    return verified


def _verify(settings: Settings, token: str, secret: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as error:
        raise _unauthorized(f"invalid token: {type(error).__name__}") from error
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _unauthorized("invalid token: roles")
    auth_time = claims.get("auth_time", claims["iat"])  # tokens from before auth_time: their own iat
    if not isinstance(auth_time, int):
        raise _unauthorized("invalid token: auth_time")
    return Principal(str(claims["sub"]), frozenset(roles), auth_time), int(claims["exp"])


async def _from_api_key(request: Request, key: str) -> Principal:
    parts = split_api_key(key)
    if parts is None:
        raise _unauthorized("malformed API key")
    key_id, secret = parts
    async with clients(request).engine.connect() as conn:
        row = await auth_repo.get_api_key(conn, key_id)
    if row is None or not digest_matches(secret, row["secret_sha256"]):
        raise _unauthorized("unknown or revoked API key")
    return Principal(f"key:{key_id}", frozenset(row["roles"]))


async def authenticate(
    request: Request,
    bearer: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, counted against its client IP and then its principal (429 when over). Every attempt
    counts against the IP, failed ones too, so guessing costs the guesser its quota."""
    limits = clients(request).limits
    key = api_key or (bearer if bearer and bearer.startswith("imk_") else None)
    if key:
        await limits.check(request, None)  # before the database lookup
        principal = await _from_api_key(request, key)
        await limits.check(request, principal.subject)
        return principal
    if not bearer:
        await limits.check(request, None)
        raise _unauthorized("send a bearer token or an X-API-Key header")
    try:
        principal = decode_token(request, bearer)  # no I/O: checked before counting, counted either way
    except Problem:
        await limits.check(request, None)
        raise
    await limits.check(request, None, principal.subject)  # both scopes, one Redis round trip
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has(role):
            raise Problem(403, "Forbidden", f"this needs the {role} role", type_="/problems/forbidden")
        request.state.principal = principal
        return principal

    check.__name__ = f"require_{role}"
    return check


def actor(request: Request) -> str:
    """The authenticated caller, recorded as the actor of the commands it sends."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise RuntimeError("a command route without an authentication dependency")
    return principal.subject


router = APIRouter(prefix="/v1/auth", tags=["auth"])
_logins = anyio.CapacityLimiter(LOGINS_AT_ONCE)


def _login_expired() -> Problem:
    return _unauthorized("the login is older than its maximum age: log in again")


@router.post(
    "/token",
    responses={
        401: {"description": "Wrong username or password."},
        429: {"description": "Too many logins from this address or for this account; see Retry-After."},
    },
)
async def token(
    request: Request, response: Response, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """OAuth2 password flow: exchange a username and password for a short-lived access token. Attempts
    are limited per client IP and per account name (any address), failed ones too."""
    await clients(request).limits.check_login(request, form.username)
    user = None
    if valid_username(form.username):  # no user has another name; the password is verified either way
        async with clients(request).engine.connect() as conn:
            user = await auth_repo.get_user(conn, form.username)
    stored = user["password_hash"] if user else None
    # argon2id takes tens of ms of CPU and 64 MiB: off the event loop, and at most LOGINS_AT_ONCE at a time.
    verified = await anyio.to_thread.run_sync(verify_password, form.password, stored, limiter=_logins)
    if not verified or user is None:
        raise _unauthorized("wrong username or password")
    response.headers.update(NO_STORE)
    settings = clients(request).settings
    return issue_token(settings, f"user:{user['username']}", list(user["roles"]), int(time.time()))


@router.post(
    "/refresh",
    responses={
        401: {
            "description": "The token is invalid or expired, the user no longer exists or is deactivated, "
            "or the login is older than INVMON_LOGIN_MAX_AGE_S."
        }
    },
)
async def refresh(
    request: Request, response: Response, principal: Annotated[Principal, Depends(require("viewer"))]
) -> Token:
    """A fresh access token for a user who holds a valid one, with the roles the user has now: a
    dashboard renews its session before expiry without keeping the password. A removed or deactivated
    user gets 401, a demoted one the smaller role set. A login lasts at most INVMON_LOGIN_MAX_AGE_S from
    the password check: past it, 401, and the user logs in again."""
    kind, _, username = principal.subject.partition(":")
    if kind != "user":
        raise Problem(403, "Forbidden", "API keys do not use access tokens", type_="/problems/forbidden")
    settings = clients(request).settings
    if time.time() >= principal.auth_time + settings.login_max_age_s:
        raise _login_expired()
    async with clients(request).engine.connect() as conn:
        user = await auth_repo.get_user(conn, username)
    if user is None:
        raise _unauthorized("the user no longer exists or is deactivated")
    response.headers.update(NO_STORE)
    return issue_token(settings, principal.subject, list(user["roles"]), principal.auth_time)
