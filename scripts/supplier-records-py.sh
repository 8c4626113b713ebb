#!/usr/bin/env bash
# Runs the independent Python implementation of the record hosting contract
# (tests/suppliers/records_py), creating .venv first if needed. Arguments go to the server,
# for example: scripts/supplier-records-py.sh --port 50062 --db data/records-py.db
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/supplier-venv.sh
exec .venv/bin/python tests/suppliers/records_py/server.py "$@"
