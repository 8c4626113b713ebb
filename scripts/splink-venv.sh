#!/usr/bin/env bash
# Creates target/splink-venv (under the ignored target/ folder) with Splink, the peer the identity
# bench `uk_matching` compares matching quality with. Idempotent: does nothing when the venv
# already has this version.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="target/splink-venv"
PIN="splink==5.0.0"

if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.pin" 2>/dev/null)" = "$PIN" ]; then
	exit 0
fi
mkdir -p target
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv "$PIN"
echo "$PIN" >"$VENV/.pin"
echo "splink venv ready: $VENV ($("$VENV/bin/python" -c 'import splink; print("splink", splink.__version__)'))"
