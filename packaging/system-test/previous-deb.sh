#!/usr/bin/env bash
# The previous build of the package, for the upgrade step of system-test.sh:
# the .deb of commit $MTASTSD_PREVIOUS (default 3fdb1f9, the last landed build
# before the system test existed), versioned <version>-0 so that the current
# <version>-1 is an upgrade. Made once and cached in $MTASTSD_ROOTS (default
# /var/cache/mtastsd-tests); prints its path. A cache miss builds that commit
# from `git archive` in a target directory of its own (a release build, several
# minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
commit="${MTASTSD_PREVIOUS:-3fdb1f9}"
cache="${MTASTSD_ROOTS:-/var/cache/mtastsd-tests}/previous-deb-$commit"
if deb=$(ls "$cache"/mtastsd_*.deb 2>/dev/null | head -1) && [ -n "$deb" ]; then
    echo "$deb"
    exit 0
fi
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive --format=tar "$commit" | tar -x -C "$src"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)
(
    cd "$src"
    export CARGO_TARGET_DIR="$cache.target"
    cargo build --locked --release -q -p mtastsd
    cargo deb --locked --no-build -q --deb-version "$version-0" --output "$src/out.deb" >/dev/null
)
mkdir -p "$cache.tmp"
cp "$src/out.deb" "$cache.tmp/mtastsd_${version}-0_amd64.deb"
rm -rf "$cache.target"
mv "$cache.tmp" "$cache"
echo "$cache/mtastsd_${version}-0_amd64.deb"
