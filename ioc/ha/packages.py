"""The Debian packages a Patroni cluster runs on, installed when missing and allowed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_LIB = Path("/usr/lib/postgresql/15/lib")


def has_timescale() -> bool:
    """TimescaleDB is installed for PostgreSQL 15 (Timescale's own packages, not Debian's)."""
    return (PG_LIB / "timescaledb.so").exists()


# Debian package → a file it installs.
PACKAGES = {
    "patroni": Path("/usr/bin/patroni"),
    "etcd-server": Path("/usr/bin/etcd"),
    "postgresql-15": PG_BIN / "postgres",
}


class MissingPackages(RuntimeError):
    """The cluster's programs are not installed and this process may not install them."""


def missing() -> list[str]:
    return [name for name, path in PACKAGES.items() if not path.exists()]


def ensure_packages() -> None:
    """Install what is missing with apt-get when running as root; otherwise say what to run."""
    needed = missing()
    if not needed:
        return
    command = ["apt-get", "install", "-y", "-qq", *needed]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise MissingPackages(
            f"the HA cluster needs Debian's {', '.join(needed)}: run "
            f"`sudo {' '.join(command)}` (or run this as root, which installs them)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, check=False).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(command, env=env, check=True)
    if still := missing():
        raise MissingPackages(f"installing {', '.join(still)} left them missing")
