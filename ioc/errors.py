"""Domain errors. The API maps each to an HTTP status in one place (ioc.api.errors)."""

from __future__ import annotations

from typing import Any


class IocError(Exception):
    """Base of errors that reach a user: a stable code, a message, optional details."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(IocError):
    code = "invalid_settings"


class InvalidInput(IocError):
    code = "invalid_input"


class MalformedBody(IocError):
    code = "malformed_body"


class PayloadTooLarge(IocError):
    code = "payload_too_large"


class UnsupportedMediaType(IocError):
    code = "unsupported_media_type"


class Unauthenticated(IocError):
    code = "unauthenticated"


class Forbidden(IocError):
    code = "forbidden"


class NotFound(IocError):
    code = "not_found"


class Conflict(IocError):
    code = "conflict"


class StoreUnavailable(IocError):
    """The database cannot be reached; the caller should retry later."""

    code = "store_unavailable"

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(IocError):
    """Too many failed attempts from one client; it may try again after ``retry_after_s``."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
