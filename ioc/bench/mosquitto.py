"""A Mosquitto broker of our own on a free local port, for the MQTT benchmark and tests.

It runs Debian's ``mosquitto`` with a configuration written to a scratch directory:
persistence on (a persistent session outlives the broker), no cap on the messages queued for
a subscriber that is away, and enough messages in flight to a subscriber that acknowledges
only after its batches are committed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ioc.children import stop_child

MOSQUITTO = os.environ.get("IOC_MOSQUITTO", "/usr/sbin/mosquitto")
INSTALL_HINT = (
    "`./run.sh test` installs Debian's mosquitto (or `apt-get install mosquitto`; "
    "IOC_MOSQUITTO names another binary)"
)


@dataclass
class Broker:
    host: str
    port: int
    home: Path
    process: subprocess.Popen[bytes]
    tls_port: int | None = None  # a second listener, TLS with the certificate given

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None, "this broker was started without a certificate"
        return f"mqtts://{self.host}:{self.tls_port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(
    port: int, home: Path, users: dict[str, str] | None = None, tls_port: int | None = None
) -> str:
    login = f"allow_anonymous false\npassword_file {home}/passwd\n" if users else ""
    tls = (
        f"listener {tls_port} 127.0.0.1\ncertfile {home}/server.crt\nkeyfile {home}/server.key\n"
        if tls_port
        else ""
    )
    return (
        f"listener {port} 127.0.0.1\n" + (login or "allow_anonymous true\n") + "persistence true\n"
        f"persistence_location {home}/\n"
        "autosave_interval 1\n"
        # Our subscriber acknowledges a batch after its commit, and commits two at once: let
        # more than two batches' worth be in flight.
        "max_inflight_messages 20000\n"
        "max_queued_messages 0\n"
        "max_queued_bytes 0\n"
        "log_type error\n"
        "log_type warning\n"
        f"log_dest file {home}/mosquitto.log\n" + tls
    )


@contextlib.contextmanager
def mosquitto(
    users: dict[str, str] | None = None, tls: tuple[bytes, bytes] | None = None
) -> Iterator[Broker]:
    """A running broker (with ``users``: only they may log in; with ``tls``, a certificate and
    its key in PEM, a second listener speaks TLS); stopped and its directory removed
    afterwards."""
    if not Path(MOSQUITTO).exists():
        raise RuntimeError(f"no mosquitto at {MOSQUITTO}: {INSTALL_HINT}")
    home = Path(tempfile.mkdtemp(prefix="ioc-mosquitto-"))
    home.chmod(0o777)  # as root, mosquitto drops to its own user, which writes here
    port = _free_port()
    tls_port = _free_port() if tls else None
    if tls:
        for name, pem in zip(("server.crt", "server.key"), tls, strict=True):
            (home / name).write_bytes(pem)
            (home / name).chmod(0o644)  # read by mosquitto's own user too
    config = home / "mosquitto.conf"
    config.write_text(config_text(port, home, users, tls_port), encoding="utf-8")
    for user, password in (users or {}).items():
        subprocess.run(
            [shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b"]
            + ([] if (home / "passwd").exists() else ["-c"])
            + [str(home / "passwd"), user, password],
            check=True,
            capture_output=True,
        )
    if users:
        (home / "passwd").chmod(0o644)  # read by mosquitto's own user too
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for listening in (port, tls_port):
            if listening is not None:
                _wait_for(process, listening)
        yield Broker("127.0.0.1", port, home, process, tls_port)
    finally:
        stop_child(process)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def _wait_for(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"mosquitto exited with {process.returncode}: {error}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("mosquitto did not listen within 15 s")
        time.sleep(0.05)
