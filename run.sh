#!/usr/bin/env bash
# The project's entry point on a fresh machine: it installs what the platform needs into a
# local virtual environment (.venv), then runs it.
#   ./run.sh demo          the platform and a simulated province, on the embedded database
#   ./run.sh test          lint, types and the whole test suite
#   ./run.sh <ioc args>    any `ioc` command, e.g. ./run.sh serve, ./run.sh bench ingest
set -euo pipefail
cd "$(dirname "$0")"

venv="${IOC_VENV:-.venv}"
python="${PYTHON:-python3}"
export IOC_DATA_DIR="${IOC_DATA_DIR:-$PWD/.ioc-data}"

install() {  # $1: run | test
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv …" >&2
        "$python" -m venv "$venv"
    fi
    local stamp="$venv/.installed-$1-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing the platform ($1) into $venv …" >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        if [ "$1" = test ]; then
            "$venv/bin/python" -m pip install --quiet -e ".[test]"
        else
            "$venv/bin/python" -m pip install --quiet -e .
        fi
        touch "$stamp"
    fi
}

ensure_chromium() {  # the page tests drive Debian's chromium (Playwright downloads no browser)
    local chromium="${IOC_TEST_CHROMIUM:-/usr/bin/chromium}"
    [ -x "$chromium" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's chromium for the page tests …" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
        echo "the page tests need chromium at $chromium: run 'sudo apt-get install chromium'" \
            "(or set IOC_TEST_CHROMIUM to another chromium binary); they fail without it" >&2
    fi
}

ensure_mosquitto() {  # the MQTT tests and `ioc bench mqtt` start Debian's mosquitto broker
    local mosquitto="${IOC_MOSQUITTO:-/usr/sbin/mosquitto}"
    [ -x "$mosquitto" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's mosquitto for the MQTT tests …" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2
    else
        echo "the MQTT tests need mosquitto at $mosquitto: run 'sudo apt-get install mosquitto'" \
            "(or set IOC_MOSQUITTO to another mosquitto binary); they fail without it" >&2
    fi
}

ensure_node() {  # the single sign-on tests run a real OpenID provider (tests/oidc) on Node.js
    command -v node >/dev/null && command -v npm >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's nodejs and npm for the single sign-on tests …" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
    else
        echo "the single sign-on tests need Node.js 18 or later with npm: run" \
            "'sudo apt-get install nodejs npm'; they fail without it" >&2
    fi
}

case "${1:-}" in
    demo)
        install run
        shift
        exec "$venv/bin/ioc" demo "$@"
        ;;
    test)
        install test
        ensure_chromium
        ensure_mosquitto
        ensure_node
        shift
        "$venv/bin/ruff" check .
        "$venv/bin/ruff" format --check .
        "$venv/bin/mypy"
        exec "$venv/bin/pytest" "$@"
        ;;
    "")
        echo "usage: ./run.sh demo | ./run.sh test | ./run.sh <ioc command>" >&2
        exit 2
        ;;
    *)
        install run
        [ "$1" = bench ] && ensure_mosquitto
        exec "$venv/bin/ioc" "$@"
        ;;
esac
