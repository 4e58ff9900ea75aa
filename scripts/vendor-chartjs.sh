#!/usr/bin/env bash
# Re-vendor Chart.js from the npm registry into emotion_app/static/vendor/, checking its checksum.
# The page loads the committed file: serving needs no npm and no build step. To upgrade, change
# VERSION, run with UPDATE=1 once, review the diff, and commit the new SHA256 below.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.5.1
SHA256=48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a
dest=emotion_app/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack checks the tarball against the registry's integrity hash before writing it.
(cd "$work" && npm pack --silent "chart.js@$VERSION" >/dev/null && tar xzf "chart.js-$VERSION.tgz")
got=$(sha256sum "$work/package/dist/chart.umd.min.js" | cut -d' ' -f1)
if [ "${UPDATE:-0}" != 1 ] && [ "$got" != "$SHA256" ]; then
    echo "chart.js $VERSION: checksum $got does not match the pinned $SHA256" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$work/package/dist/chart.umd.min.js" "$dest/chart.umd.min.js"
cp "$work/package/LICENSE.md" "$dest/chart.js.LICENSE.md"
echo "vendored chart.js $VERSION ($got) into $dest"
