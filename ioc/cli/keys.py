"""``ioc keys``: API keys for sources, agencies and people (hashed at rest)."""

from __future__ import annotations

import click

from ioc.cli.common import cli_settings, with_database


@click.group()
def keys() -> None:
    """API keys (hashed at rest; the key itself is shown once)."""


@keys.command("create")
@click.option(
    "--role",
    default="source",
    show_default=True,
    type=click.Choice(["source", "operator", "agency", "leader", "admin"]),
)
@click.option("--source", help="For a source key: the source name it posts for (e.g. hue-s).")
@click.option("--agency", help="For an agency key: the agency code it works for.")
@click.option("--label", default="", help="A note on who holds the key.")
def keys_create(role: str, source: str | None, agency: str | None, label: str) -> None:
    """Create a key and print it once."""
    from ioc.store.keys import create_key

    key, key_id = with_database(
        cli_settings(), lambda conn: create_key(conn, role, source, agency, label)
    )
    click.echo(key.token)
    click.echo(
        f"key {key.prefix} (id {key_id}, role {role}) created; store it now, "
        "it cannot be shown again",
        err=True,
    )


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def keys_list(include_revoked: bool) -> None:
    """List keys (never their secrets)."""
    from ioc.store.keys import list_keys

    rows = with_database(cli_settings(), lambda conn: list_keys(conn, include_revoked))
    click.echo(f"{'prefix':<14}{'role':<10}{'source':<16}{'agency':<16}{'created':<27}revoked")
    for k in rows:
        click.echo(
            f"{k.prefix:<14}{k.role:<10}{k.source or '-':<16}{k.agency or '-':<16}"
            f"{k.created_at.isoformat(timespec='seconds'):<27}"
            f"{k.revoked_at.isoformat(timespec='seconds') if k.revoked_at else '-'}"
        )


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix (takes effect within IOC_KEY_CACHE_S seconds)."""
    from ioc.store.keys import revoke_key

    with_database(cli_settings(), lambda conn: revoke_key(conn, prefix))
    click.echo(f"revoked {prefix}")
