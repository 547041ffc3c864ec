"""The public lookup's settings, declared apart (``ioc.settings.Settings`` takes them in, with its
``IOC_`` prefix) so the settings module stays readable."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LookupSettings(BaseModel):
    """IOC_LOOKUP_…: the allowance per client address and what the lookup never shows."""

    lookup_burst: int = Field(
        default=20,
        ge=1,
        description="Public lookups (/lookup, /v1/public/lookup) one client address may make at once before it is answered 429.",
    )
    lookup_per_minute: float = Field(
        default=20.0,
        gt=0,
        description="…and the rate (per minute) at which that allowance refills.",
    )
    lookup_hidden: str = Field(
        default="an_ninh_trat_tu",
        description="Categories and procedure codes (comma list) the public lookup never shows: their codes answer as if they did not exist.",
    )
