#!/usr/bin/env bash
# Installs what the console's browser tests need (tests/e2e/console.rs): Debian's Chromium (Playwright's
# own browser download cannot be used here; playwright-core drives /usr/bin/chromium) and the web
# console's pinned npm packages (web/package-lock.json: buf, protoc-gen-es, esbuild, nhsuk-frontend,
# playwright-core, axe-core). Idempotent and quick when nothing changed. Fails (never skips) when
# either cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
	command -v apt-get >/dev/null || {
		echo "browser-install: $CHROMIUM is missing and apt-get is not available: install Chromium" >&2
		exit 1
	}
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
	[ -x "$CHROMIUM" ] || { echo "browser-install: Chromium did not install at $CHROMIUM" >&2; exit 1; }
	echo "browser-install: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
fi

scripts/console-npm.sh
