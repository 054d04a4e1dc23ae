"""Users, roles and API tokens of the review service (tables `users`, `api_tokens`).

Roles are ordered: a viewer reads; a clerk also corrects, confirms and exports; a supervisor
also reopens a confirmed order. Secrets are stored only as argon2id hashes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.review.errors import Forbidden, Invalid, NotFound, Unauthenticated

Role = Literal["viewer", "clerk", "supervisor"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
_RANK: Final[dict[str, int]] = {role: i for i, role in enumerate(ROLES)}
Source = Literal["web", "cli", "api"]

USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN_PREFIX = "mgw"
_TOKEN = re.compile(r"^mgw_([a-z0-9]{8,32})_([A-Za-z0-9_-]{20,})$")

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does an action, with which role, through which surface."""

    user: str
    role: Role
    source: Source

    def require(self, needed: Role, what: str) -> None:
        """Raise Forbidden unless the role is at least `needed`."""
        if _RANK[self.role] < _RANK[needed]:
            raise Forbidden(f"{what} needs the role {needed} or higher; {self.user} is {self.role}")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored: str, secret: str) -> bool:
    try:
        return _hasher.verify(stored, secret)
    except (VerificationError, InvalidHashError):
        return False


async def add_user(
    conn: asyncpg.Connection, name: str, role: str, display_name: str | None = None
) -> None:
    """Create a user; Invalid for a bad name or role or a name already taken."""
    if not USER_NAME.match(name):
        raise Invalid(f"user name {name!r}: letters, digits, '_', '.', '@', '-', 1-64 characters")
    if role not in ROLES:
        raise Invalid(f"role {role!r}: must be one of {', '.join(ROLES)}")
    try:
        await conn.execute(
            "INSERT INTO users (name, role, display_name) VALUES ($1, $2, $3)",
            name,
            role,
            display_name,
        )
    except asyncpg.UniqueViolationError as err:
        raise Invalid(f"user {name!r} exists already") from err


async def user_role(conn: asyncpg.Connection, name: str) -> Role:
    """The role of a user; NotFound when there is no such user."""
    role = await conn.fetchval("SELECT role FROM users WHERE name = $1", name)
    if role is None:
        raise NotFound(f"no user {name!r} (add one with `mesgw user add {name} --role clerk`)")
    return cast("Role", role)


async def actor(conn: asyncpg.Connection, name: str, source: Source) -> Actor:
    return Actor(user=name, role=await user_role(conn, name), source=source)


async def list_users(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT u.name, u.role, u.display_name, u.created_at,"
        " (SELECT count(*) FROM api_tokens t WHERE t.user_name = u.name) AS tokens"
        " FROM users u ORDER BY u.name"
    )
    return [dict(r) for r in rows]


async def create_token(conn: asyncpg.Connection, user: str, label: str | None = None) -> str:
    """A new API token for `user`, returned once: only its hash is stored."""
    await user_role(conn, user)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    await conn.execute(
        "INSERT INTO api_tokens (token_id, user_name, hash, label) VALUES ($1, $2, $3, $4)",
        token_id,
        user,
        hash_secret(secret),
        label,
    )
    return f"{TOKEN_PREFIX}_{token_id}_{secret}"


async def check_token(conn: asyncpg.Connection, token: str) -> tuple[str, Role]:
    """The user and role a token belongs to; Unauthenticated when it is not valid."""
    match = _TOKEN.match(token)
    if match is None:
        raise Unauthenticated("not a mesgw API token")
    row = await conn.fetchrow(
        "SELECT t.hash, u.name, u.role FROM api_tokens t JOIN users u ON u.name = t.user_name"
        " WHERE t.token_id = $1 AND (t.expires_at IS NULL OR t.expires_at > now())",
        match[1],
    )
    if row is None or not verify_secret(row["hash"], match[2]):
        raise Unauthenticated("unknown or expired API token")
    return row["name"], cast("Role", row["role"])
