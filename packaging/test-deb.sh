#!/usr/bin/env bash
# The Debian package, end to end, as an administrator meets it:
# build it with cargo-deb, lint it, install it with dpkg, check the systemd
# units, run the installed daemon with the packaged configuration and ask it
# through real Postfix (postmap -q), then purge it and check what is left.
#
# Needs root (dpkg -i), and: cargo-deb, lintian, postfix (postmap), systemd
# (systemd-analyze), man-db, python3; .ci/run installs them. Changes the
# machine: installs the package and removes it again (the system user
# "mtastsd" stays, as Debian policy allows).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# postmap needs a main.cf; the machine's may not exist (Postfix installed with
# "No configuration"), and is not ours to change.
mkdir "$work/postfix"
echo "compatibility_level = 3.6" >"$work/postfix/main.cf"
postmap() { command postmap -c "$work/postfix" "$@"; }

step "building the package"
cargo deb --locked >/dev/null
target="${CARGO_TARGET_DIR:-target}"
version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="mtastsd"))')
deb="$target/debian/mtastsd_${version}-1_amd64.deb"
[ -f "$deb" ] || fail "no $deb"
size=$(stat -c %s "$deb")
step "$deb: $size bytes"

step "lintian"
# --fail-on: any error or warning fails (info and pedantic tags are printed).
set +e
lint=$(lintian --fail-on error,warning --display-info "$deb" 2>&1)
rc=$?
set -e
lint=$(grep -v "running with root privileges" <<<"$lint" || true)
[ -z "$lint" ] || echo "$lint"
[ "$rc" = 0 ] || fail "lintian found errors or warnings (exit $rc)"

# The package contents Debian policy and the issue ask for.
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/mtastsd ./etc/mtastsd/mtastsd.toml ./usr/lib/systemd/system/mtastsd.service \
    ./usr/share/doc/mtastsd/examples/mtastsd.socket ./usr/share/man/man8/mtastsd.8.gz \
    ./usr/share/man/man5/mtastsd.toml.5.gz ./usr/share/doc/mtastsd/README.Debian \
    ./usr/share/doc/mtastsd/copyright ./usr/share/doc/mtastsd/examples/main.cf \
    ./usr/share/doc/mtastsd/examples/chroot.conf ./usr/share/doc/mtastsd/CHECK.md \
    ./usr/lib/sysctl.d/60-mtastsd.conf ./usr/share/doc/mtastsd/examples/tlsrpt-mail.conf \
    ./usr/share/doc/mtastsd/examples/main.cf.tlsrpt ./usr/share/doc/mtastsd/examples/master.cf.tlsrpt; do
    grep -q " $f\$" <<<"$contents" || fail "$f missing from the package"
done
# The examples as shipped are the files in contrib/ (README "TLS-RPT" and
# examples/tlsrpt-mail.conf name them by these paths).
for pair in contrib/systemd/tlsrpt-mail.conf:tlsrpt-mail.conf contrib/postfix/main.cf.tlsrpt:main.cf.tlsrpt \
    contrib/postfix/master.cf.tlsrpt:master.cf.tlsrpt contrib/systemd/chroot.conf:chroot.conf; do
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/doc/mtastsd/examples/${pair#*:}" | cmp -s - "${pair%%:*}" ||
        fail "examples/${pair#*:} in the package differs from ${pair%%:*}"
done
# 60-mtastsd.conf sets the TLS-RPT socket's queue (SPEC 8.1).
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/sysctl.d/60-mtastsd.conf | grep -qx 'net.unix.max_dgram_qlen = 1024' ||
    fail "60-mtastsd.conf does not set net.unix.max_dgram_qlen = 1024"
dpkg-deb -f "$deb" Depends | grep -q ca-certificates || fail "does not depend on ca-certificates"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/mtastsd/mtastsd.toml ||
    fail "/etc/mtastsd/mtastsd.toml is not a conffile"

step "dpkg -i"
# A leftover from an interrupted run would hide what this install does.
dpkg --purge mtastsd >/dev/null 2>&1 || true
dpkg -i "$deb" >/dev/null
id mtastsd >/dev/null || fail "no system user mtastsd after install"
[ "$(stat -c %U:%a /var/lib/mtastsd)" = "mtastsd:750" ] || fail "/var/lib/mtastsd: $(stat -c %U:%a /var/lib/mtastsd)"
readelf -S /usr/sbin/mtastsd | grep -q '\.symtab' && fail "/usr/sbin/mtastsd is not stripped"
man -w mtastsd >/dev/null && man -w 5 mtastsd.toml >/dev/null || fail "man pages not found by man"
/usr/sbin/mtastsd check-config /etc/mtastsd/mtastsd.toml >/dev/null || fail "the packaged config does not check"

step "systemd-analyze verify"
# The socket unit as the administrator installs it (README.Debian).
cp /usr/share/doc/mtastsd/examples/mtastsd.socket "$work/"
out=$(cd "$work" && systemd-analyze verify /usr/lib/systemd/system/mtastsd.service ./mtastsd.socket 2>&1) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
exposure=$(systemd-analyze security --offline=true --threshold=15 /usr/lib/systemd/system/mtastsd.service 2>&1 | tail -1) ||
    fail "systemd-analyze security: exposure above 1.5: $exposure"
step "systemd-analyze security: $exposure"

free_port() { # $1: tcp or udp
    python3 -c "import socket,sys; s=socket.socket(type=socket.SOCK_STREAM if sys.argv[1]=='tcp' else socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}
wait_for_port() { # $1: port; the daemon is up when postmap gets any answer
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),1)" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    fail "nothing listens on 127.0.0.1:$1"
}


step "the installed daemon, packaged configuration (127.0.0.1:8461)"
setpriv --reuid=mtastsd --regid=mtastsd --init-groups -- /usr/sbin/mtastsd serve --config /etc/mtastsd/mtastsd.toml 2>"$work/packaged.log" &
pids+=($!)
wait_for_port 8461
# A key that needs no DNS: NOTFOUND, i.e. exit 1, nothing printed, no warning.
set +e
out=$(postmap -q '[192.0.2.1]' socketmap:inet:127.0.0.1:8461:postfix 2>&1)
rc=$?
set -e
[ "$rc" = 1 ] && [ -z "$out" ] || fail "postmap on the packaged daemon: exit $rc, output: $out"
kill -TERM "${pids[-1]}" && wait "${pids[-1]}" || fail "the packaged daemon did not exit 0 on SIGTERM: $(cat "$work/packaged.log")"

step "the installed daemon against a loopback MTA-STS world"
bench_world="$target/debug/bench-world"
cargo build --locked -q -p socketmap-load --bin bench-world
dns_port=$(free_port udp)
https_port=$(free_port tcp)
listen_port=$(free_port tcp)
"$bench_world" serve --dns "127.0.0.1:$dns_port" --https "127.0.0.1:$https_port" \
    --ca-file "$work/ca.pem" --suffix deb.test --id deb1 --max-domains 10 2>"$work/world.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/ca.pem" ] && break; sleep 0.1; done
chmod 644 "$work/ca.pem"
# The packaged file with only the world's addresses changed.
python3 - "$work" "$dns_port" "$https_port" "$listen_port" <<'EOF'
import re, sys
work, dns, https, listen = sys.argv[1:]
text = open("/etc/mtastsd/mtastsd.toml").read()
for key, value in [("listen", f'["127.0.0.1:{listen}", "unix:{work}/spool/mtastsd/socketmap"]'),
                   ("nameservers", f'["127.0.0.1:{dns}"]'),
                   ("https_port", https)]:
    text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    assert n == 1, key
for key, value in [("ca_file", f'"{work}/ca.pem"'), ("unix_group", '"postfix"')]:
    text, n = re.subn(rf"^#{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    assert n == 1, key
open(f"{work}/world.toml", "w").write(text)
EOF
# A unix socket as for a chrooted Postfix (examples/chroot.conf): in a directory
# of the queue directory that only mtastsd and the postfix group may enter,
# set-group-ID postfix so the socket gets that group; the daemon is not a member.
# (packaging/system-test.sh runs the real drop-in under systemd.)
mkdir "$work/spool"
install -d -o mtastsd -g postfix -m 2750 "$work/spool/mtastsd"
setpriv --reuid=mtastsd --regid=mtastsd --init-groups -- \
    /usr/sbin/mtastsd serve --config "$work/world.toml" 2>"$work/world-daemon.log" &
pids+=($!)
wait_for_port "$listen_port"
answer=$(postmap -q d3.deb.test "socketmap:inet:127.0.0.1:$listen_port:postfix") ||
    fail "postmap d3.deb.test: $(cat "$work/world-daemon.log")"
[ "$answer" = "secure match=mx.d3.deb.test servername=hostname" ] || fail "postmap answered: $answer"
step "postmap -q d3.deb.test: $answer"
[ "$(stat -c %G:%a "$work/spool/mtastsd/socketmap")" = postfix:660 ] ||
    fail "unix socket is $(stat -c %G:%a "$work/spool/mtastsd/socketmap"), not postfix:660"
# As Postfix's smtp(8) does: user postfix, the path relative to the queue directory.
answer=$(cd "$work/spool" && setpriv --reuid=postfix --regid=postfix --init-groups -- \
    postmap -c "$work/postfix" -q d4.deb.test socketmap:unix:mtastsd/socketmap:postfix) ||
    fail "postmap as postfix over the unix socket: $(cat "$work/world-daemon.log")"
[ "$answer" = "secure match=mx.d4.deb.test servername=hostname" ] || fail "unix socket answered: $answer"
step "as user postfix, socketmap:unix:mtastsd/socketmap: $answer"
kill -TERM "${pids[-1]}" && wait "${pids[-1]}" || fail "daemon did not exit 0: $(cat "$work/world-daemon.log")"
grep -q d3.deb.test /var/lib/mtastsd/policies.json || fail "policy not saved in /var/lib/mtastsd"
[ "$(stat -c %U /var/lib/mtastsd/policies.json)" = mtastsd ] || fail "saved cache not owned by mtastsd"

step "dpkg --purge"
dpkg --purge mtastsd >/dev/null
left=$(ls -d /usr/sbin/mtastsd /etc/mtastsd /var/lib/mtastsd /usr/lib/systemd/system/mtastsd.* \
    /etc/systemd/system/*/mtastsd.* /usr/share/doc/mtastsd /usr/share/man/man8/mtastsd.8.gz 2>/dev/null || true)
[ -z "$left" ] || fail "left behind after purge: $left"
dpkg-query -W -f='${Status}\n' mtastsd 2>/dev/null | grep -qx "install ok installed" && fail "still installed"
step "ok: built, linted, installed, answered through postmap, purged ($size bytes)"
