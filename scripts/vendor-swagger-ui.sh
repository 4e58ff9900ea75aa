#!/usr/bin/env bash
# Re-vendor Swagger UI (the /api/docs page) from the npm registry into emotion_app/static/vendor/swagger-ui/,
# checking its checksums. The page loads the committed files: serving needs no npm and no CDN. To upgrade,
# change VERSION, run with UPDATE=1 once, review the diff, and commit the new SHA256 values below.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=5.36.0
BUNDLE_SHA256=b164c5a22535e40dae08c00271674a67e437ec195098c55fcedf8ffac7ac3c88
CSS_SHA256=7eb9f5a125e4bc9b3f0b71869b66d1a3d7c501f972f53d44ef91c2ae6c5bda5e
dest=emotion_app/static/vendor/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack checks the tarball against the registry's integrity hash before writing it.
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf "swagger-ui-dist-$VERSION.tgz")
check() {
    local got
    got=$(sha256sum "$work/package/$1" | cut -d' ' -f1)
    if [ "${UPDATE:-0}" != 1 ] && [ "$got" != "$2" ]; then
        echo "swagger-ui-dist $VERSION: $1 has checksum $got, not the pinned $2" >&2
        exit 1
    fi
    echo "$1 $got"
}
check swagger-ui-bundle.js "$BUNDLE_SHA256"
check swagger-ui.css "$CSS_SHA256"
mkdir -p "$dest"
cp "$work/package/swagger-ui-bundle.js" "$work/package/swagger-ui.css" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE"
cp "$work/package/NOTICE" "$dest/NOTICE"
echo "vendored swagger-ui-dist $VERSION into $dest"
