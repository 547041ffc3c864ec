"""Single sign-on through the province's OpenID provider: which official the provider's claims
name (``mapping``) and the talk with the provider (``client``: discovery, the authorization code
flow with PKCE, the ID token checked against the provider's keys)."""
