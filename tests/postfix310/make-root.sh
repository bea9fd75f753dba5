#!/usr/bin/env bash
# A Debian 13 (trixie) root with Postfix 3.10 (built with libtlsrpt), for
# tests/postfix310.rs: Postfix 3.10 must accept mtastsd's TLS-RPT answers and
# report through TLSRPT (SPEC 6.3). Debian 12's Postfix 3.7 cannot: it defers
# mail on answers carrying the TLS-RPT attributes.
#
# Idempotent: does nothing when the root exists. Needs root and mmdebstrap;
# about 35 s and 175 MB. The tests look for it in $MTASTSD_TRIXIE_ROOT, by
# default /var/cache/mtastsd-tests/trixie.
set -euo pipefail
root="${MTASTSD_TRIXIE_ROOT:-/var/cache/mtastsd-tests/trixie}"
mirror="${MTASTSD_TRIXIE_MIRROR:-http://deb.debian.org/debian}"
if [ -x "$root/usr/sbin/postfix" ]; then
    exit 0
fi
mkdir -p "$(dirname "$root")"
rm -rf "$root.tmp"
mmdebstrap --quiet --variant=apt --include=postfix,ca-certificates,libtlsrpt0 \
    --customize-hook='echo "postfix postfix/main_mailer_type select No configuration" | chroot "$1" debconf-set-selections' \
    trixie "$root.tmp" "$mirror"
mv "$root.tmp" "$root"
echo "made $root: $(chroot "$root" postconf -d -h mail_version 2>/dev/null || echo '?')"
