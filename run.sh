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

case "${1:-}" in
    demo)
        install run
        shift
        exec "$venv/bin/ioc" demo "$@"
        ;;
    test)
        install test
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
        exec "$venv/bin/ioc" "$@"
        ;;
esac
