"""``ioc users``: officials' accounts (people log in with these; keys stay for machines)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg

from ioc.cli.common import cli_settings, with_database

FC = TypeVar("FC", bound=Callable[..., Any])


@click.group()
def users() -> None:
    """Officials' accounts: name, login, password (argon2 hash), role and agency."""


def _now() -> datetime:
    return datetime.now(UTC)


def _password_option(help_text: str) -> Callable[[FC], FC]:
    return click.option(
        "--password",
        "ask",
        is_flag=True,
        help=help_text + " Without it, a temporary password is printed once.",
    )


def _read_password(ask: bool) -> str | None:
    if not ask:
        return None
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@users.command("create")
@click.option("--login", required=True, help="The login (a-z, 0-9, '.', '_', '-').")
@click.option("--name", required=True, help="Full name, with diacritics (Nguyễn Thị Lan).")
@click.option(
    "--role",
    default="agency",
    show_default=True,
    type=click.Choice(["operator", "agency", "leader", "admin"]),
)
@click.option("--agency", help="The agency code (needed for role agency).")
@_password_option("Type the password (asked twice, never echoed).")
def users_create(login: str, name: str, role: str, agency: str | None, ask: bool) -> None:
    """Create an account."""
    from ioc.accounts import check_user
    from ioc.store.users import create_user

    password = _read_password(ask)

    async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[str, str]:
        user = check_user(login, name, role, agency)
        info, chosen = await create_user(conn, user, password, _now())
        return info.login, chosen

    created, chosen = with_database(cli_settings(), work)
    if password is None:
        click.echo(chosen)
    click.echo(f"account {created} ({role}) created", err=True)


@users.command("list")
@click.option("--agency", help="Only this agency's officials.")
@click.option("--all", "include_disabled", is_flag=True, help="Include disabled accounts.")
def users_list(agency: str | None, include_disabled: bool) -> None:
    """List accounts (never their passwords)."""
    from ioc.store.users import list_users

    rows = with_database(cli_settings(), lambda conn: list_users(conn, agency, include_disabled))
    click.echo(f"{'login':<24}{'role':<10}{'agency':<16}{'disabled':<27}name")
    for u in rows:
        disabled = u.disabled_at.isoformat(timespec="seconds") if u.disabled_at else "-"
        click.echo(f"{u.login:<24}{u.role:<10}{u.agency or '-':<16}{disabled:<27}{u.name}")


def _switch(login: str, disabled: bool) -> None:
    from ioc.store.users import set_disabled

    with_database(cli_settings(), lambda conn: set_disabled(conn, login, disabled, _now()))
    click.echo(f"{'disabled' if disabled else 'enabled'} {login}")


@users.command("disable")
@click.argument("login")
def users_disable(login: str) -> None:
    """Disable an account and end its logins (within IOC_KEY_CACHE_S seconds on servers)."""
    _switch(login, True)


@users.command("enable")
@click.argument("login")
def users_enable(login: str) -> None:
    """Enable a disabled account again."""
    _switch(login, False)


@users.command("reset-password")
@click.argument("login")
@_password_option("Type the new password (asked twice, never echoed).")
def users_reset(login: str, ask: bool) -> None:
    """Set a new password for an account; its logins end."""
    from ioc.store.users import reset_password

    password = _read_password(ask)
    _, chosen = with_database(
        cli_settings(), lambda conn: reset_password(conn, login, password, _now())
    )
    if password is None:
        click.echo(chosen)
    click.echo(f"password of {login} reset; its logins have ended", err=True)


@users.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def users_import(file: Path) -> None:
    """Create accounts from a CSV of officials (UTF-8; columns login, name, role, agency).

    Prints login,name,temporary_password of each created account as CSV (hand them over once);
    each refused row is reported on stderr with its line and why, and the command then exits 1.
    """
    from ioc.accounts import read_csv
    from ioc.errors import InvalidInput
    from ioc.store.users import import_users

    try:
        valid, errors = read_csv(file.read_bytes())
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    created, refused = with_database(cli_settings(), lambda conn: import_users(conn, valid, _now()))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["login", "name", "temporary_password"])
    for info, password in created:
        out.writerow([info.login, info.name, password])
    problems = sorted(errors + refused, key=lambda e: e.line)
    for e in problems:
        click.echo(f"{file}:{e.line}: {e.field}: {e.reason}", err=True)
    click.echo(f"{len(created)} accounts created, {len(problems)} rows refused", err=True)
    if problems:
        sys.exit(1)
