"""Single sign-on's settings (OpenID Connect), declared apart (``ioc.settings.Settings`` takes
them in, with its ``IOC_`` prefix) so the settings module stays readable."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SsoSettings(BaseModel):
    """IOC_OIDC_…: the province's provider, this platform's client, and the claim mapping."""

    oidc_issuer: str | None = Field(
        default=None,
        description="Single sign-on: the province's OpenID provider (its issuer URL; /.well-known/openid-configuration is read from it). Unset: officials log in with their password only.",
    )
    oidc_client_id: str = Field(
        default="", description="Single sign-on: the client id the provider gave this platform."
    )
    oidc_client_secret: str = Field(
        default="",
        description="Single sign-on: the client's secret (sent with HTTP Basic); empty: a public client.",
    )
    oidc_redirect_url: str | None = Field(
        default=None,
        description="Single sign-on: the callback URL registered at the provider, https://<this site>/login/oidc/callback. Unset: built from the address the browser used.",
    )
    oidc_scopes: str = Field(
        default="openid profile email",
        description="Single sign-on: the scopes asked for (space-separated; openid is always asked).",
    )
    oidc_role_claim: str = Field(
        default="groups",
        description="Single sign-on: the claim (a string or a list) that gives the role, through oidc_role_map.",
    )
    oidc_role_map: str = Field(
        default="",
        description="Single sign-on: claim value=role pairs, comma-separated, the first that matches wins, e.g. ioc-quan-tri=admin,ioc-dieu-hanh=operator,ioc-lanh-dao=leader,ioc-can-bo=agency. A person none matches gets oidc_default_role.",
    )
    oidc_default_role: str = Field(
        default="",
        description="Single sign-on: the role of a person whose role claim matches no pair. Empty: such a person is refused (with a page saying why) and the refusal is logged.",
    )
    oidc_agency_claim: str = Field(
        default="agency",
        description="Single sign-on: the claim that gives the official's agency, through oidc_agency_map.",
    )
    oidc_agency_map: str = Field(
        default="",
        description="Single sign-on: claim value=agency code pairs, comma-separated (e.g. so-tnmt=hue-moi-truong); a value no pair names is taken as the agency code itself.",
    )
