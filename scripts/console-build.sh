#!/usr/bin/env bash
# Builds the web console (web/) into crates/console/assets/, which the carerecord-console binary
# embeds: TypeScript generated from data access's contract by buf (protoc-gen-es) into web/src/gen/,
# type-checked by tsc, bundled and minified by esbuild; the NHS.UK frontend's stylesheet with the
# console's own. Commit both web/src/gen/ and the assets: building carerecord needs no Node.
#
#   scripts/console-build.sh           regenerate web/src/gen/ from proto/, build into
#                                      crates/console/assets/
#   scripts/console-build.sh --check   build from the committed web/ (generated code included)
#                                      elsewhere, and fail if the committed assets differ (sources
#                                      changed without rebuilding), as make test does
#
# The console is a client of data access's contract like any other: contracts change additively
# (make proto-breaking), so a console generated from an earlier revision keeps working; rebuild to
# use what a newer revision adds.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/console-npm.sh
out=crates/console/assets
if [ "${1:-}" = "--check" ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
bin=web/node_modules/.bin

# CONSOLE_KEEP_GENERATED=1 builds from web/src/gen/ as it stands (e.g. generated from a given revision).
if [ "${1:-}" != "--check" ] && [ -z "${CONSOLE_KEEP_GENERATED:-}" ]; then
	"$bin/buf" generate --template web/buf.gen.yaml \
		--path proto/carerecord/access/v1/access.proto --path proto/carerecord/common/v1/common.proto -o web
fi
(cd web && node_modules/.bin/tsc -p tsconfig.json)
mkdir -p "$out"
"$bin/esbuild" web/src/main.ts --bundle --minify --format=esm --target=es2022 \
	--legal-comments=none --charset=utf8 --log-level=warning --outfile="$out/app.js"
{
	cat web/node_modules/nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.css
	echo
	cat web/src/console.css
} >"$out/app.css"
cp web/index.html "$out/index.html"

if [ "${1:-}" = "--check" ]; then
	if ! diff -rq "$out" crates/console/assets; then
		echo "console-build: crates/console/assets/ is not what web/ builds: run scripts/console-build.sh and commit" >&2
		exit 1
	fi
	echo "console-build: crates/console/assets/ matches web/"
else
	ls -l "$out"
fi
