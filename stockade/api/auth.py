"""Who may call what (design.md §10): roles, the keys a server accepts, the check every route
makes.

Roles rank ``anyone`` < ``service`` < ``merchant``. Each route declares the role it needs with
:func:`requires`, in one place: the check, the route's OpenAPI ``security`` and the route table
test all read that declaration, and ``create_app`` refuses to build an app with a route that
declares none (:func:`route_access`).

Answers: no key where one is needed, or a key that is not valid (unknown, revoked, malformed,
another scheme): 401 with ``WWW-Authenticate: Bearer``; a valid key whose role is too low: 403.
Routes open to anyone never look at the header.

A check reads no database and costs the same whatever is presented: the SHA-256 of the whole
token compared (``hmac.compare_digest``) with the admin token's, then the SHA-256 of the
secret part compared with the stored hash of the key its id names, or with a dummy hash when
no live key has that id. The :class:`KeyRing` holding the hashes is in memory, kept in step with
the store by :class:`stockade.api.keys.ApiKeys`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, Literal

import msgspec
from quart import Quart, Response, current_app, g, request

from stockade.api.problems import Problem
from stockade.persistence.keys import ID_HEX_DIGITS, KEY_PREFIX, KeyRecord, KeyRole, secret_digest

__all__ = [
    "RANK",
    "Access",
    "Forbidden",
    "KeyRing",
    "Role",
    "Unauthorized",
    "access_of",
    "authorize",
    "requires",
    "route_access",
]

Role = Literal["anyone", "service", "merchant"]
RANK: dict[str, int] = {"anyone": 0, "service": 1, "merchant": 2}
Route = Callable[..., Awaitable[Response]]

_PREFIX = KEY_PREFIX.encode()
_ID_END = len(_PREFIX) + ID_HEX_DIGITS  # sk_<16 hex digits>_<secret>
_DUMMY: tuple[bytes, KeyRole | None] = (os.urandom(32), None)


class Access(msgspec.Struct, frozen=True):
    """A route's declaration: the ``role`` it needs, and whether anonymous callers may call it
    when the server takes public holds (``serve --public-holds``). Such a route lets them
    through with role ``anyone`` and itself narrows what they may do: place a hold (never a
    purchase), cancel a reserved order (never a return). Routes that change or extend a hold
    declare the same; they act on reserved orders only, so they need nothing more."""

    role: Role
    public_holds: bool = False


class Unauthorized(Problem):
    """401: no key where one is needed, or one that is not valid."""

    def __init__(self, detail: str, *, invalid: bool = False) -> None:
        challenge = 'Bearer realm="stockade"' + (', error="invalid_token"' if invalid else "")
        super().__init__(401, "unauthorized", "Unauthorized", detail,
                         headers={"WWW-Authenticate": challenge})  # fmt: skip


class Forbidden(Problem):
    """403: a valid key whose role is below what the route needs."""

    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", "Forbidden", detail)


PURCHASE_NEEDS_A_KEY = (
    "anonymous callers may place holds only (hold_seconds): a direct purchase needs a service "
    "or merchant key"
)


class KeyRing:
    """The keys a server accepts, in memory: the admin token's hash (the token itself is not
    kept) and each live key's secret hash by id; and whether anonymous holds are public."""

    def __init__(self, admin_token: str, *, public_holds: bool = False) -> None:
        # An empty admin token admits nothing: its hash is replaced by one nobody can match.
        token = admin_token.encode()
        self._admin = hashlib.sha256(token).digest() if token else os.urandom(32)
        self._keys: dict[bytes, tuple[bytes, KeyRole | None]] = {}
        self.public_holds = public_holds

    def replace(self, records: Iterable[KeyRecord]) -> None:
        """Accept exactly the live keys among ``records`` from now on."""
        self._keys = {
            r.id.encode(): (bytes.fromhex(r.digest), r.role)
            for r in records
            if r.revoked_at is None
        }

    def role_of(self, token: bytes) -> KeyRole | None:
        """The role of the key ``token``; None if it is not one (or is revoked)."""
        admin = hmac.compare_digest(hashlib.sha256(token).digest(), self._admin)
        digest, role = _DUMMY
        secret = b""
        if token.startswith(_PREFIX) and token[_ID_END : _ID_END + 1] == b"_":
            digest, role = self._keys.get(token[len(_PREFIX) : _ID_END], _DUMMY)
            secret = token[_ID_END + 1 :]
        matched = hmac.compare_digest(secret_digest(secret), digest)
        if admin:
            return "merchant"
        return role if matched else None

    def __len__(self) -> int:
        return len(self._keys)


def authorize(
    guard: KeyRing, authorization: bytes | None, access: Access, *, anonymous_ok: bool = True
) -> Role:
    """The caller's role, if the ``Authorization`` header ``authorization`` may call a route
    declared ``access``; else raise Unauthorized (no key, or not a valid one) or Forbidden (a
    valid key of too low a role). Anonymous callers get ``anyone`` on a route open to anyone,
    and on a public-holds route when the guard takes public holds and ``anonymous_ok`` (False
    for what they may never do there: a direct purchase). Never blocks."""
    if access.role == "anyone":
        return "anyone"
    if not authorization:
        if access.public_holds and guard.public_holds:
            if anonymous_ok:
                return "anyone"
            raise Unauthorized(PURCHASE_NEEDS_A_KEY)
        raise Unauthorized(f"this needs a {_who(access.role)} key: Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(b" ")
    role = guard.role_of(token.strip()) if scheme.lower() == b"bearer" else None
    if role is None:
        raise Unauthorized("the key is not valid (unknown, revoked or malformed)", invalid=True)
    if RANK[role] < RANK[access.role]:
        raise Forbidden(f"this needs a {_who(access.role)} key, not a {role} key")
    return role


def _who(role: Role) -> str:
    return "service or merchant" if role == "service" else role


def requires(role: Role, *, public_holds: bool = False) -> Callable[[Route], Route]:
    """Declare the role a route needs (and check it on every call, before the body is read).
    The caller's role is left in ``g.role``. ``public_holds``: see :class:`Access`."""
    access = Access(role, public_holds)

    def declare(route: Route) -> Route:
        if role == "anyone":
            route.__dict__["stockade_access"] = access
            return route

        @wraps(route)
        async def checked(*args: Any, **kwargs: Any) -> Response:
            header = request.headers.get("Authorization")
            raw = None if header is None else header.encode("latin-1", "replace")
            g.role = authorize(current_app.config["STOCKADE_AUTH"], raw, access)
            return await route(*args, **kwargs)

        checked.__dict__["stockade_access"] = access
        return checked

    return declare


def access_of(view: Callable[..., Any]) -> Access | None:
    """What a view function declared with :func:`requires`, if anything."""
    access: Access | None = getattr(view, "__dict__", {}).get("stockade_access")
    return access


def route_access(app: Quart) -> dict[tuple[str, str], Access]:
    """Every route of ``app`` as ``(OpenAPI path, lower-case method)`` -> its declaration.
    Raises RuntimeError naming the routes that declare no role (HEAD and OPTIONS follow GET
    and the route itself)."""
    declared: dict[tuple[str, str], Access] = {}
    missing = []
    for rule in app.url_map.iter_rules():
        access = access_of(app.view_functions[rule.endpoint])
        if access is None:
            missing.append(rule.rule)
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            declared[(path, method.lower())] = access
    if missing:
        raise RuntimeError(
            f"routes without a declared role: {', '.join(missing)} "
            "(decorate each with stockade.api.auth.requires)"
        )
    return declared
