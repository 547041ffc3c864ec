"""Which official a provider's claims name: the single sign-on settings, checked once, and the
mapping of a role claim and an agency claim to our role and agency code. A person the mapping
gives no role is refused with a reason the login page can show."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ioc.accounts import USER_ROLES, check_login, check_name
from ioc.auth import Role
from ioc.errors import ConfigError, Forbidden, InvalidInput
from ioc.settings import Settings

CALLBACK_PATH: Final = "/login/oidc/callback"
# OpenID Connect's standard claims for a new account's login and the official's name.
LOGIN_CLAIM: Final = "preferred_username"
NAME_CLAIM: Final = "name"


class SsoRefused(Forbidden):
    """The provider vouched for the person, but they may not use the platform (no role, no
    agency, a disabled account...)."""

    code = "sso_refused"


class SsoFailed(Forbidden):
    """The login through the provider did not hold together: a state or nonce that does not
    match, an ID token that does not verify, a provider that answered an error."""

    code = "sso_failed"


@dataclass(frozen=True, slots=True)
class SsoConfig:
    """The single sign-on settings, validated."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str | None
    scopes: tuple[str, ...]
    role_claim: str
    role_map: tuple[tuple[str, Role], ...]
    default_role: Role | None
    agency_claim: str
    agency_map: Mapping[str, str]

    @classmethod
    def of(cls, settings: Settings) -> SsoConfig | None:
        """The configuration, or None when single sign-on is off; raises ConfigError naming
        the setting that is wrong."""
        if not settings.oidc_issuer:
            return None
        issuer = settings.oidc_issuer.rstrip("/")
        if not issuer.startswith(("https://", "http://")):
            raise ConfigError(f"IOC_OIDC_ISSUER={issuer!r}: an http(s) URL is needed")
        if not settings.oidc_client_id:
            raise ConfigError("IOC_OIDC_CLIENT_ID is needed when IOC_OIDC_ISSUER is set")
        pairs = _pairs(settings.oidc_role_map, "IOC_OIDC_ROLE_MAP")
        roles = tuple((claim, _role(role, "IOC_OIDC_ROLE_MAP")) for claim, role in pairs)
        default = settings.oidc_default_role.strip()
        if not roles and not default:
            raise ConfigError(
                "IOC_OIDC_ROLE_MAP (or IOC_OIDC_DEFAULT_ROLE) is needed: without it single "
                "sign-on gives nobody a role"
            )
        scopes = settings.oidc_scopes.split()
        return cls(
            issuer=issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            redirect_url=settings.oidc_redirect_url or None,
            scopes=tuple(["openid", *(s for s in scopes if s != "openid")]),
            role_claim=settings.oidc_role_claim,
            role_map=roles,
            default_role=_role(default, "IOC_OIDC_DEFAULT_ROLE") if default else None,
            agency_claim=settings.oidc_agency_claim,
            agency_map=dict(_pairs(settings.oidc_agency_map, "IOC_OIDC_AGENCY_MAP")),
        )


def _pairs(text: str, variable: str) -> list[tuple[str, str]]:
    """``value=target`` pairs, comma-separated."""
    found = []
    for pair in filter(None, (p.strip() for p in text.split(","))):
        claim, sep, target = pair.partition("=")
        if not (sep and claim.strip() and target.strip()):
            raise ConfigError(f"{variable}: {pair!r} is not claim-value=target")
        found.append((claim.strip(), target.strip()))
    return found


def _role(value: str, variable: str) -> Role:
    accepted = ", ".join(r.value for r in USER_ROLES)
    try:
        role = Role(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{variable}: unknown role {value!r}; accepted: {accepted}") from None
    if role not in USER_ROLES:
        raise ConfigError(f"{variable}: {value!r} is for machines' keys; accepted: {accepted}")
    return role


@dataclass(frozen=True, slots=True)
class Person:
    """The official the provider vouches for, in our terms."""

    issuer: str
    subject: str
    login: str
    name: str
    role: Role
    agency: str | None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def person_of(config: SsoConfig, claims: Mapping[str, Any]) -> Person:
    """Our official for the provider's (verified) claims; raises SsoRefused when the claims
    give no role, or an agency official no agency."""
    subject = str(claims["sub"])
    values = _strings(claims.get(config.role_claim))
    role = next((r for claim, r in config.role_map if claim in values), config.default_role)
    if role is None:
        raise SsoRefused(
            "tài khoản tỉnh của bạn chưa được cấp quyền dùng Trung tâm IOC; hãy đề nghị quản trị "
            f"viên thêm bạn vào một nhóm được phép (the claim {config.role_claim!r} names no "
            f"role of this platform: {', '.join(values) or 'nothing'})"
        )
    given = _strings(claims.get(config.agency_claim))
    agency = config.agency_map.get(given[0], given[0]).strip() if given else None
    if role is Role.AGENCY and not agency:
        raise SsoRefused(
            "tài khoản tỉnh của bạn chưa gắn với cơ quan nào (the claim "
            f"{config.agency_claim!r} gives no agency, which an agency official needs)"
        )
    return Person(
        issuer=config.issuer,
        subject=subject,
        login=_login(claims.get(LOGIN_CLAIM), config.issuer, subject),
        name=_name(claims.get(NAME_CLAIM), subject),
        role=role,
        agency=agency or None,
    )


def _login(value: Any, issuer: str, subject: str) -> str:
    if isinstance(value, str):
        try:
            return check_login(value)
        except InvalidInput:
            pass
    return "sso-" + hashlib.sha256(f"{issuer} {subject}".encode()).hexdigest()[:12]


def _name(value: Any, subject: str) -> str:
    try:
        return check_name(value if isinstance(value, str) else "")
    except InvalidInput:
        return subject[:200]
