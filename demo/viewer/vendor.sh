#!/usr/bin/env bash
# Refreshes demo/viewer/vendor/leaflet from the npm package (npm checks its
# integrity), so that the viewer loads Leaflet from its own server and never
# from a CDN.  The files are committed: the demo needs no Node.js to show a
# map.  Leaflet is BSD-2-Clause (vendor/leaflet/LICENSE).
#
#   demo/viewer/vendor.sh [VERSION]      (default: the version committed)
set -euo pipefail

VERSION=${1:-1.9.4}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/vendor/leaflet
TMP=$(mktemp -d "${TMPDIR:-/tmp}/leaflet.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

(cd "$TMP" && npm pack --silent "leaflet@$VERSION" >/dev/null && tar xzf "leaflet-$VERSION.tgz")
rm -rf "$OUT"
mkdir -p "$OUT/images"
cp "$TMP/package/dist/leaflet.js" "$TMP/package/dist/leaflet.css" "$TMP/package/LICENSE" "$OUT/"
cp "$TMP/package/dist/images/marker-icon.png" "$TMP/package/dist/images/marker-icon-2x.png" \
	"$TMP/package/dist/images/marker-shadow.png" "$OUT/images/"
echo "$VERSION" >"$OUT/VERSION"
echo "vendored leaflet $VERSION in $OUT"
