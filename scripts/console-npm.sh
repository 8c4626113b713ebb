#!/usr/bin/env bash
# Installs the web console's pinned npm packages into web/node_modules (npm ci from
# web/package-lock.json). Idempotent and quick when nothing changed: the install is stamped with a
# hash of the lock file. Fails (never skips) when they cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/../web"

stamp="node_modules/.console-$(sha256sum package.json package-lock.json | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
	command -v npm >/dev/null || {
		echo "console-npm: npm is needed (Node.js 20 or later)" >&2
		exit 1
	}
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.console-*
	touch "$stamp"
	echo "console-npm: web/node_modules ready"
fi
