#!/usr/bin/env bash
# Makes sure the PostgreSQL server a URL names accepts connections: starts the local cluster if it
# is installed but stopped, and fails loudly otherwise. Usage: ensure-postgres.sh postgres://user@host:port/db
set -euo pipefail
url="${1:?usage: ensure-postgres.sh postgres://user@host:port/db}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5432

reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if ! reachable && command -v pg_ctlcluster >/dev/null; then
  echo "PostgreSQL is not answering on $host:$port; starting the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do reachable && break; sleep 1; done
fi
if ! reachable; then
  echo "error: PostgreSQL is unreachable at $host:$port; the PostgreSQL half of the tests cannot run" >&2
  exit 1
fi
echo "PostgreSQL is reachable at $host:$port"
