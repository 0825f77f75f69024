#!/usr/bin/env bash
# Refreshes the JavaScript the pages use from npm into api/web/vendor/,
# checked against the integrity pinned here. The files are committed (the
# server embeds them; running it needs no npm), so this runs only to change
# a version: set VERSION and INTEGRITY from `npm view chart.js@X dist.integrity`.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.6.1
INTEGRITY=sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@$VERSION" >/dev/null)
tarball="$work/chart.js-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "chart.js $VERSION: integrity $actual, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
cp "$work/package/dist/chart.umd.min.js" api/web/vendor/chart.umd.min.js
cp "$work/package/LICENSE.md" api/web/vendor/chart.js-LICENSE.md
echo "api/web/vendor: chart.js $VERSION ($INTEGRITY)"
