"""Agencies, categories and responsibility rules, from a TOML file or the admin API.

[[agencies]]
code = "so-xd"
name_vi = "Sở Xây dựng"
parent = "ubnd-tp"          # escalation goes here
lon = 105.85                # optional: where its one-stop shop is (both or neither); the wall
lat = 21.03                 # map shows its dossiers that carry no location of their own there

[[categories]]
code = "moi_truong"
name_vi = "Môi trường, rác thải"
default_deadline_hours = 48

[[deadlines]]               # how long a subject may take (replaces the category default)
subject = "ticket"          # or "dossier", keyed by procedure code
key = "moi_truong"
unit = "working_hours"      # calendar_hours, working_hours or working_days
amount = 16

[[rules]]                   # the most specific matching rule wins
category = "moi_truong"     # omit for any category
level = "ward"              # or jurisdiction_code = "19753"; omit both for anywhere
agency = "hepco"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import psycopg

from ioc.errors import InvalidInput
from ioc.events.kinds import Code, Ident, Lat, Lon

Level = Literal["province", "district", "ward"]


class AgencyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name_vi: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    parent: Code | None = None
    webhook_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None
    webhook_secret: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    lon: Lon | None = None
    lat: Lat | None = None


class CategoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name_vi: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    default_deadline_hours: Annotated[int, msgspec.Meta(gt=0, le=24 * 366)]


class RuleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    agency: Code
    category: Code | None = None
    level: Level | None = None
    jurisdiction_code: Ident | None = None
    note: str = ""


class DeadlineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    subject: Literal["ticket", "dossier"]
    key: Ident
    unit: Literal["calendar_hours", "working_hours", "working_days"]
    amount: Annotated[float, msgspec.Meta(gt=0, le=24 * 366)]


class ResponsibilityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    agencies: list[AgencyConfig] = msgspec.field(default_factory=list)
    categories: list[CategoryConfig] = msgspec.field(default_factory=list)
    rules: list[RuleConfig] = msgspec.field(default_factory=list)
    deadlines: list[DeadlineConfig] = msgspec.field(default_factory=list)


def parse_config(data: Any, origin: str) -> ResponsibilityConfig:
    try:
        return msgspec.convert(data, ResponsibilityConfig)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{origin}: {exc}") from None


def read_config(path: Path) -> ResponsibilityConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    return parse_config(data, str(path))


async def apply_config(
    conn: psycopg.AsyncConnection[Any], config: ResponsibilityConfig
) -> dict[str, int]:
    """Upsert agencies and categories and replace the rules, in one transaction."""
    async with conn.transaction():
        cur = await conn.execute("SELECT code FROM agencies")
        agencies = {str(r[0]) for r in await cur.fetchall()} | {a.code for a in config.agencies}
        cur = await conn.execute("SELECT code FROM categories")
        categories = {str(r[0]) for r in await cur.fetchall()} | {c.code for c in config.categories}
        for number, agency in enumerate(config.agencies, start=1):
            if agency.parent and agency.parent not in agencies:
                raise InvalidInput(
                    f"agencies[{number}] ({agency.code}): unknown parent {agency.parent!r}"
                )
            if (agency.lon is None) != (agency.lat is None):
                raise InvalidInput(
                    f"agencies[{number}] ({agency.code}): give both lon and lat, or neither"
                )
        for number, rule in enumerate(config.rules, start=1):
            if rule.agency not in agencies:
                raise InvalidInput(
                    f"rules[{number}]: unknown agency {rule.agency!r}; known: {', '.join(sorted(agencies))}"
                )
            if rule.category and rule.category not in categories:
                raise InvalidInput(
                    f"rules[{number}]: unknown category {rule.category!r}; known: {', '.join(sorted(categories))}"
                )
            if rule.level and rule.jurisdiction_code:
                raise InvalidInput(f"rules[{number}]: give level or jurisdiction_code, not both")
        seen: set[tuple[str, str]] = set()
        for number, deadline in enumerate(config.deadlines, start=1):
            if deadline.subject == "ticket" and deadline.key not in categories:
                raise InvalidInput(
                    f"deadlines[{number}]: unknown category {deadline.key!r}; known: {', '.join(sorted(categories))}"
                )
            if deadline.unit == "working_days" and deadline.amount != int(deadline.amount):
                raise InvalidInput(f"deadlines[{number}]: working_days must be a whole number")
            if (deadline.subject, deadline.key) in seen:
                raise InvalidInput(
                    f"deadlines[{number}]: a second policy for {deadline.subject} {deadline.key!r}"
                )
            seen.add((deadline.subject, deadline.key))
        async with conn.cursor() as cur:
            # Parents are set after every agency exists, so the file's order does not matter.
            await cur.executemany(
                """INSERT INTO agencies (code, name_vi, webhook_url, webhook_secret, lon, lat)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (code) DO UPDATE SET name_vi = EXCLUDED.name_vi,
                   webhook_url = EXCLUDED.webhook_url, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
                   -- the secret is never shown, so a config read back and saved keeps it
                   webhook_secret = coalesce(EXCLUDED.webhook_secret, agencies.webhook_secret)""",
                [
                    (a.code, a.name_vi, a.webhook_url, a.webhook_secret, a.lon, a.lat)
                    for a in config.agencies
                ],
            )
            await cur.executemany(
                "UPDATE agencies SET parent_code = %s WHERE code = %s",
                [(a.parent, a.code) for a in config.agencies],
            )
            await cur.executemany(
                """INSERT INTO categories (code, name_vi, default_deadline_hours) VALUES (%s, %s, %s)
                   ON CONFLICT (code) DO UPDATE SET name_vi = EXCLUDED.name_vi,
                   default_deadline_hours = EXCLUDED.default_deadline_hours""",
                [(c.code, c.name_vi, c.default_deadline_hours) for c in config.categories],
            )
            await cur.execute("DELETE FROM responsibility_rules")
            await cur.executemany(
                """INSERT INTO responsibility_rules (category, level, jurisdiction_code, agency, note)
                   VALUES (%s, %s, %s, %s, %s)""",
                [
                    (r.category, r.level, r.jurisdiction_code, r.agency, r.note)
                    for r in config.rules
                ],
            )
            await cur.execute("DELETE FROM deadline_policies")
            await cur.executemany(
                "INSERT INTO deadline_policies (subject, key, unit, amount) VALUES (%s, %s, %s, %s)",
                [(d.subject, d.key, d.unit, d.amount) for d in config.deadlines],
            )
    return {
        "deadlines": len(config.deadlines),
        "agencies": len(config.agencies),
        "categories": len(config.categories),
        "rules": len(config.rules),
    }


async def dump_config(conn: psycopg.AsyncConnection[Any]) -> ResponsibilityConfig:
    cur = await conn.execute(
        "SELECT code, name_vi, parent_code, webhook_url, lon, lat FROM agencies ORDER BY code"
    )
    agencies = [
        AgencyConfig(code=c, name_vi=n, parent=p, webhook_url=w, lon=x, lat=y)
        for c, n, p, w, x, y in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT code, name_vi, default_deadline_hours FROM categories ORDER BY code"
    )
    categories = [
        CategoryConfig(code=c, name_vi=n, default_deadline_hours=h)
        for c, n, h in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT agency, category, level, jurisdiction_code, note FROM responsibility_rules ORDER BY id"
    )
    rules = [
        RuleConfig(agency=a, category=c, level=lv, jurisdiction_code=j, note=n)
        for a, c, lv, j, n in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT subject, key, unit, amount FROM deadline_policies ORDER BY subject, key"
    )
    deadlines = [
        DeadlineConfig(subject=s, key=k, unit=u, amount=float(a))
        for s, k, u, a in await cur.fetchall()
    ]
    return ResponsibilityConfig(
        agencies=agencies, categories=categories, rules=rules, deadlines=deadlines
    )
