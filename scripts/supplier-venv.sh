#!/usr/bin/env bash
# Creates .venv/ (gitignored) with the pinned Python packages the test suppliers under
# tests/suppliers/ need: grpcio and grpcio-tools (code is generated from proto/ at run time),
# grpcio-status (google.rpc error details), health checking and reflection.
# Idempotent: does nothing when .venv already has exactly these pins.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"
REQUIREMENTS="tests/suppliers/requirements.txt"

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.requirements" ] && cmp -s "$REQUIREMENTS" "$VENV/.requirements"; then
	exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv -r "$REQUIREMENTS"
cp "$REQUIREMENTS" "$VENV/.requirements"
echo "supplier venv ready: $VENV ($("$VENV/bin/python" --version))"
