#!/usr/bin/env bash
# A bootable Debian root for packaging/system-test.sh: systemd as PID 1 (booted
# with systemd-nspawn), Postfix (Internet Site), rsyslog, and what the package
# depends on (adduser, ca-certificates), so that `apt install ./mtastsd_*.deb`
# resolves every dependency offline inside the container's private network.
#
# Usage: make-root.sh bookworm|trixie. Prints the root's path. Idempotent: does
# nothing when the root exists (made once, about a minute and 250 MB each; the
# test boots ephemeral copies and never changes it). Needs root and mmdebstrap.
# The roots live beside the Postfix 3.10 root of tests/postfix310/make-root.sh,
# in $MTASTSD_ROOTS (default /var/cache/mtastsd-tests).
set -euo pipefail
release="${1:?usage: make-root.sh bookworm|trixie}"
case "$release" in bookworm | trixie) ;; *) echo "make-root.sh: unknown release $release" >&2; exit 2 ;; esac
root="${MTASTSD_ROOTS:-/var/cache/mtastsd-tests}/system-$release"
mirror="${MTASTSD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [ -x "$root/usr/sbin/postfix" ] && [ -e "$root/.complete" ]; then
    echo "$root"
    exit 0
fi
mkdir -p "$(dirname "$root")"
rm -rf "$root.tmp"
# The debconf answers come first: postfix's postinst reads them on installation.
mmdebstrap --quiet --variant=minbase \
    --include=systemd,systemd-sysv,dbus,postfix,rsyslog,ca-certificates,adduser \
    --essential-hook='printf "%s\n" "postfix postfix/main_mailer_type select Internet Site" "postfix postfix/mailname string sender.test" | chroot "$1" debconf-set-selections' \
    --customize-hook='echo mtastsd-test >"$1/etc/hostname"' \
    --customize-hook='rm -f "$1/etc/resolv.conf"' \
    "$release" "$root.tmp" "$mirror" >&2
touch "$root.tmp/.complete"
mv "$root.tmp" "$root"
echo "made $root: Postfix $(chroot "$root" postconf -d -h mail_version 2>/dev/null || echo '?')" >&2
echo "$root"
