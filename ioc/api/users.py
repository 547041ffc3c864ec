"""Officials' account endpoints: admins create, list, disable, enable, reset and import them from
CSV; an agency sees its own officials (whom it may assign); an official changes their password."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from ioc.accounts import MAX_NAME, check_user, read_csv
from ioc.api.body import read_body
from ioc.api.inputs import body_schema, json_body
from ioc.auth import Principal, Role
from ioc.errors import Forbidden, InvalidInput, MalformedBody, UnsupportedMediaType
from ioc.events.validation import JSON_TYPES, explain
from ioc.platform import Platform
from ioc.store import users

_ADMIN = frozenset({Role.ADMIN})
_LISTERS = frozenset({Role.ADMIN, Role.AGENCY})
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_Login = Annotated[str, Path(max_length=64, description="the official's login")]
_Short = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
_Password = Annotated[str, msgspec.Meta(max_length=256)]
T = TypeVar("T")


class NewUserBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    login: _Short
    name: _Short
    role: _Short
    agency: _Short | None = None
    password: _Password | None = None  # none: a temporary one is made and answered once


class ResetBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    password: _Password | None = None


class ChangeBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    current_password: _Password
    new_password: _Password


def _decode(kind: type[T], body: bytes | bytearray) -> T:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        field, reason = explain(exc)
        raise InvalidInput(
            f"{field or 'body'}: {reason}", [{"field": field, "reason": reason}]
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody("a JSON object is expected: " + explain(exc)[1]) from None


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


def build_users_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/users", tags=["users"])
    limit = platform.settings.max_body_bytes

    async def admin(request: Request) -> Principal:
        who = await platform.authenticate(request)
        who.require(_ADMIN)
        return who

    @router.get(
        "",
        summary="Officials' accounts (admins: all; an agency: its own active officials)",
        responses={code: _ERROR for code in (401, 403, 422, 503)},
    )
    async def list_users(
        request: Request,
        agency: Annotated[str | None, Query(max_length=200)] = None,
        include_disabled: Annotated[bool, Query(alias="all")] = False,
    ) -> Response:
        who = await platform.authenticate(request)
        who.require(_LISTERS)
        if who.role is Role.AGENCY:
            if agency not in (None, who.agency):
                raise Forbidden("an agency sees only its own officials")
            agency, include_disabled = who.agency, False
        async with platform.pool.connection() as conn:
            found = await users.list_users(conn, agency, include_disabled)
        return _json({"users": [u.as_dict() for u in found]})

    @router.post(
        "",
        status_code=201,
        summary="Create an official's account (no password given: a temporary one, answered once)",
        openapi_extra=json_body(body_schema(NewUserBody)),
        responses={code: _ERROR for code in (400, 401, 403, 409, 413, 415, 422, 503)},
    )
    async def create(request: Request) -> Response:
        await admin(request)
        given = _decode(NewUserBody, await read_body(request, limit, JSON_TYPES))
        user = check_user(given.login, given.name, given.role, given.agency)
        async with platform.pool.connection() as conn:
            info, password = await users.create_user(
                conn, user, given.password, platform.clock.now()
            )
        answer = info.as_dict()
        if given.password is None:
            answer["temporary_password"] = password
        return _json(answer, 201)

    @router.post(
        "/import",
        summary="Create officials from a CSV file (text/csv, UTF-8; columns login, name, role, "
        "agency): each created one with a temporary password, each refused row with why",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
        responses={code: _ERROR for code in (401, 403, 413, 415, 422, 503)},
    )
    async def import_csv(request: Request) -> Response:
        await admin(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/csv":
            raise UnsupportedMediaType(f"content type {kind or '(none)'!r}; send text/csv")
        valid, errors = read_csv(await read_body(request, limit))
        async with platform.pool.connection() as conn:
            created, refused = await users.import_users(conn, valid, platform.clock.now())
        rows = sorted(errors + refused, key=lambda e: e.line)
        return _json(
            {
                "created": [
                    {"login": u.login, "name": u.name, "temporary_password": p} for u, p in created
                ],
                "errors": [e.as_dict() for e in rows],
            }
        )

    @router.post(
        "/me/password",
        summary="Change one's own password (an official logged in with their account)",
        openapi_extra=json_body(body_schema(ChangeBody)),
        responses={code: _ERROR for code in (400, 401, 403, 413, 415, 422, 503)},
    )
    async def change_own(request: Request) -> Response:
        who = await platform.authenticate(request)
        if who.user_id is None:
            raise Forbidden("only an official logged in with an account has a password")
        given = _decode(ChangeBody, await read_body(request, limit, JSON_TYPES))
        async with platform.pool.connection() as conn:
            await users.change_password(
                conn,
                who.user_id,
                given.current_password,
                given.new_password,
                platform.clock.now(),
                platform.auth.session_of(request),
            )
        platform.auth.forget_user(who.user_id)
        return _json({"changed": True})

    @router.post(
        "/{login}/password",
        summary="Reset an official's password (none given: a temporary one, answered once); "
        "their logins end",
        openapi_extra=json_body(body_schema(ResetBody)),
        responses={code: _ERROR for code in (400, 401, 403, 404, 413, 415, 422, 503)},
    )
    async def reset(request: Request, login: _Login) -> Response:
        await admin(request)
        given = _decode(ResetBody, await read_body(request, limit, JSON_TYPES))
        async with platform.pool.connection() as conn:
            info, password = await users.reset_password(
                conn, login, given.password, platform.clock.now()
            )
        platform.auth.forget_user(info.id)
        answer = info.as_dict()
        if given.password is None:
            answer["temporary_password"] = password
        return _json(answer)

    for verb, disabled in (("disable", True), ("enable", False)):
        router.add_api_route(
            "/{login}/" + verb,
            _switch(platform, admin, disabled),
            methods=["POST"],
            summary=f"{verb.capitalize()} an official's account"
            + (" (their logins end; the history keeps their name)" if disabled else ""),
            responses={code: _ERROR for code in (401, 403, 404, 422, 503)},
        )
    return router


def _switch(platform: Platform, admin: Any, disabled: bool) -> Any:
    async def switch(request: Request, login: _Login) -> Response:
        await admin(request)
        async with platform.pool.connection() as conn:
            info = await users.set_disabled(conn, login, disabled, platform.clock.now())
        platform.auth.forget_user(info.id)
        return _json(info.as_dict())

    return switch
