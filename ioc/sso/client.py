"""The talk with the province's OpenID provider, as an OpenID Connect relying party: the
provider's discovery document and keys (cached, the keys read again when an unknown key id
appears), the authorization request (code flow, PKCE with S256, state and nonce), and the code
exchanged for tokens whose ID token is verified (signature against the provider's JWKS; issuer,
audience, expiry, nonce, authorized party, access-token hash). The OAuth and JOSE work is done
by Authlib and joserfc; nothing here parses a token by hand."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx
from authlib.common.urls import url_encode
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from ioc.errors import IocError
from ioc.sso.mapping import Person, SsoConfig, SsoFailed, person_of

log = logging.getLogger(__name__)

# The discovery document is read again after this long (seconds).
METADATA_MAX_AGE: Final = 3600.0
# Clocks of the provider and ours may differ this much (seconds).
LEEWAY_S: Final = 60
TIMEOUT_S: Final = 10.0


class SsoUnavailable(IocError):
    """The provider could not be reached or answered nonsense."""

    code = "sso_unavailable"


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What a login begun at the provider must find again when the browser comes back."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_path: str | None

    @classmethod
    def new(cls, redirect_uri: str, next_path: str | None) -> PendingLogin:
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters of RFC 7636's alphabet
            redirect_uri=redirect_uri,
            next_path=next_path,
        )


class OpenIdClient:
    """One per process: the provider's metadata and keys are cached here."""

    def __init__(self, config: SsoConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def http() -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)

    async def _json(self, http: httpx.AsyncClient, request: httpx.Request) -> dict[str, Any]:
        try:
            response = await http.send(request)
        except httpx.HTTPError as exc:
            raise SsoUnavailable(
                f"không kết nối được máy chủ đăng nhập của tỉnh ({request.url.host}: {exc})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SsoUnavailable(
                f"máy chủ đăng nhập của tỉnh trả lời không phải JSON ({request.url.path}: "
                f"HTTP {response.status_code})"
            )
        if response.status_code >= 400:
            described = body.get("error_description") or body.get("error") or "no reason given"
            raise SsoFailed(
                f"máy chủ đăng nhập của tỉnh từ chối (the provider refused: {described})"
            )
        return body

    async def metadata(self, http: httpx.AsyncClient) -> dict[str, Any]:
        """The provider's discovery document (its issuer must be the one configured)."""
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_MAX_AGE:
                url = self.config.issuer + "/.well-known/openid-configuration"
                found = await self._json(http, http.build_request("GET", url))
                if found.get("issuer", "").rstrip("/") != self.config.issuer:
                    raise SsoUnavailable(
                        f"the discovery document at {url} names the issuer "
                        f"{found.get('issuer')!r}, not {self.config.issuer!r}"
                    )
                missing = [
                    k
                    for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
                    if not isinstance(found.get(k), str)
                ]
                if missing:
                    raise SsoUnavailable(f"the discovery document at {url} lacks {missing}")
                self._metadata, self._metadata_at, self._keys = found, time.monotonic(), None
            return self._metadata

    async def _key_set(self, http: httpx.AsyncClient, again: bool = False) -> KeySet:
        meta = await self.metadata(http)
        if self._keys is None or again:
            found = await self._json(http, http.build_request("GET", meta["jwks_uri"]))
            try:
                self._keys = KeySet.import_key_set(found)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise SsoUnavailable(f"the provider's key set cannot be read: {exc}") from None
        return self._keys

    async def authorization_url(self, http: httpx.AsyncClient, pending: PendingLogin) -> str:
        meta = await self.metadata(http)
        url: str = prepare_grant_uri(
            meta["authorization_endpoint"],
            self.config.client_id,
            "code",
            redirect_uri=pending.redirect_uri,
            scope=" ".join(self.config.scopes),
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256",
        )
        return url

    async def person(
        self, http: httpx.AsyncClient, pending: PendingLogin, code: str, now: datetime
    ) -> Person:
        """The official behind an authorization code: tokens fetched with the code and its
        PKCE verifier, the ID token verified, the claims (with the userinfo endpoint's, when
        the provider has one) mapped to our role and agency."""
        meta = await self.metadata(http)
        body = url_encode(
            [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", pending.redirect_uri),
                ("code_verifier", pending.code_verifier),
            ]
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        # A client without a secret is a public one (PKCE alone); otherwise HTTP Basic.
        method = "client_secret_basic" if self.config.client_secret else "none"
        auth = ClientAuth(self.config.client_id, self.config.client_secret, method)
        uri, headers, body = auth.prepare("POST", meta["token_endpoint"], headers, body)
        tokens = await self._json(
            http, http.build_request("POST", uri, headers=headers, content=body)
        )
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise SsoFailed("the provider's token answer has no ID token (is 'openid' a scope?)")
        claims = await self._verified(http, meta, id_token, access_token, pending.nonce, now)
        if isinstance(meta.get("userinfo_endpoint"), str):
            claims = await self._with_userinfo(
                http, meta["userinfo_endpoint"], access_token, claims
            )
        return person_of(self.config, claims)

    async def _verified(
        self,
        http: httpx.AsyncClient,
        meta: dict[str, Any],
        id_token: str,
        access_token: str,
        nonce: str,
        now: datetime,
    ) -> dict[str, Any]:
        algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        registry = JWSRegistry(algorithms=[a for a in algorithms if a != "none"])
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(http), registry=registry)
            except InvalidKeyIdError:  # the provider rolled its keys
                token = jwt.decode(id_token, await self._key_set(http, True), registry=registry)
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": self.config.issuer},
                    "aud": {"essential": True, "value": self.config.client_id},
                    "exp": {"essential": True},
                },
                {"nonce": nonce, "client_id": self.config.client_id, "access_token": access_token},
            )
            claims.validate(now=int(now.timestamp()), leeway=LEEWAY_S)
        except (JoseError, ValueError) as exc:
            error = getattr(exc, "error", type(exc).__name__)
            described = getattr(exc, "description", None) or str(exc)
            log.warning("single sign-on: an ID token was refused: %s: %s", error, described)
            raise SsoFailed(
                "đăng nhập qua tài khoản tỉnh không hợp lệ, hãy thử lại (the ID token was "
                f"refused: {error}: {described})"
            ) from None
        return dict(claims)

    async def _with_userinfo(
        self, http: httpx.AsyncClient, url: str, access_token: str, claims: dict[str, Any]
    ) -> dict[str, Any]:
        """The ID token's claims completed by the userinfo endpoint's (same subject)."""
        request = http.build_request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        info = await self._json(http, request)
        if info.get("sub") != claims["sub"]:
            raise SsoFailed("the provider's userinfo names another subject than the ID token")
        return {**info, **claims}
