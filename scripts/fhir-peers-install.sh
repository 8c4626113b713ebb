#!/usr/bin/env bash
# Installs the independent FHIR clients the gateway is tested against (tests/e2e/fhir_peers.rs):
# fhirpy and fhir.resources (PyPI) into the venv .venv/fhir-peers (gitignored with .venv), and
# fhir-kit-client (npm) into tests/fhir_peers/node_modules, both from the pins in tests/fhir_peers/.
# Idempotent and quick when nothing changed: each install is stamped with a hash of its pins.
# Fails (never skips) when either cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv/fhir-peers"
PEERS="tests/fhir_peers"
REQUIREMENTS="$PEERS/requirements.txt"

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

python_stamp="$VENV/.fhir-peers-$(stamp_of "$REQUIREMENTS")"
if [ ! -f "$python_stamp" ]; then
	mkdir -p .venv
	"$PYTHON" -m venv "$VENV" || {
		echo "fhir-peers: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
		exit 1
	}
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv -r "$REQUIREMENTS"
	"$VENV/bin/python" -c 'import fhir.resources, fhirpy; assert fhir.resources.__fhir_version__ == "4.0.1"'
	rm -f "$VENV"/.fhir-peers-*
	touch "$python_stamp"
	echo "fhir-peers: Python clients ready in $VENV"
fi

node_stamp="$PEERS/node_modules/.fhir-peers-$(stamp_of "$PEERS/package.json" "$PEERS/package-lock.json")"
if [ ! -f "$node_stamp" ]; then
	command -v npm >/dev/null || {
		echo "fhir-peers: npm is needed (Node.js 20 or later)" >&2
		exit 1
	}
	(cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error)
	rm -f "$PEERS"/node_modules/.fhir-peers-*
	touch "$node_stamp"
	echo "fhir-peers: fhir-kit-client ready in $PEERS/node_modules"
fi
