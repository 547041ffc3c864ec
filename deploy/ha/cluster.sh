#!/usr/bin/env bash
# A two-node Patroni cluster with one etcd on this machine, to try the HA layout:
#   deploy/ha/cluster.sh start /srv/ioc-ha     # prints IOC_DATABASE_URL and IOC_READ_DATABASE_URL
#   deploy/ha/cluster.sh status /srv/ioc-ha
#   deploy/ha/cluster.sh stop /srv/ioc-ha
# As root it installs Debian's patroni, etcd-server and postgresql-15 when missing and runs
# everything as the postgres user. --fast: Patroni's test timing (ttl 20 s, loop_wait 1 s).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
venv="${IOC_VENV:-.venv}"
[ -x "$venv/bin/python" ] && python="$venv/bin/python"
exec "$python" -m ioc.ha.cluster "$@"
