"""A real OpenID provider for the single sign-on tests: ``tests/oidc/provider.mjs`` on Node,
with the ``oidc-provider`` package at the version ``tests/oidc/package-lock.json`` pins. The
package is installed (``npm ci``) the first time, like the browser and the broker other tests
start."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ioc.children import stop_child

HERE = Path(__file__).resolve().parent / "oidc"
CLIENT_ID = "ioc-trung-tam"
CLIENT_SECRET = "bi-mat-cua-ung-dung-ioc-trong-thu-nghiem"


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the single sign-on tests run a real OpenID provider on Node.js (18 or later): "
            "install node and npm (e.g. `apt-get install nodejs npm`)"
        )
    return node, npm


def ensure_installed() -> str:
    """The node binary, once tests/oidc/node_modules holds the pinned provider."""
    node, npm = _node_tools()
    with (HERE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once install once
        if not (HERE / "node_modules" / "oidc-provider" / "package.json").exists():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                pytest.fail(f"`npm ci` in {HERE} failed:\n{done.stdout}\n{done.stderr}")
    return node


@contextmanager
def provider(port: int, redirect_uri: str) -> Iterator[str]:
    """A running provider on ``port`` that knows our client and ``redirect_uri``; yields its
    issuer URL (named ``localhost``: another site than the platform's 127.0.0.1)."""
    node = ensure_installed()
    issuer = f"http://localhost:{port}"
    env = os.environ | {
        "OIDC_ISSUER": issuer,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": redirect_uri,
    }
    process = subprocess.Popen(
        [node, str(HERE / "provider.mjs")],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while not line.startswith("ready"):
            waiting = deadline - time.monotonic()
            if waiting <= 0 or process.poll() is not None:
                pytest.fail(f"the OpenID provider did not start (exit {process.poll()})")
            if select.select([process.stdout], [], [], waiting)[0]:
                line = process.stdout.readline()
        yield issuer
    finally:
        stop_child(process)
        if process.stdout is not None:
            process.stdout.close()
