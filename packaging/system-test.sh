#!/usr/bin/env bash
# The package on booted Debian systems, as an administrator runs it: systemd as
# PID 1 (systemd-nspawn --boot on a cached mmdebstrap root), the shipped unit
# with its sandbox, Postfix delivering mail through the daemon, in Debian 12
# (Postfix 3.7) and Debian 13 (Postfix 3.10). Per release, in one container:
#   1. apt install ./target/debian/mtastsd_*_amd64.deb (README "Install"), the
#      service active, its start in the journal, systemd-analyze security at
#      the README's figure, postmap -q through the installed daemon;
#   2. Postfix with the README's main.cf line, mail sent with sendmail:
#      delivered, or deferred where an enforce policy's MX has a wrong
#      certificate, read from Postfix's log (/var/log/mail.log);
#   3. the chroot variant (examples/chroot.conf, Debian's chrooted smtp(8),
#      the unix socket in the spool), mail delivered through it;
#   4. socket activation with the shipped mtastsd.socket: a lookup starts the
#      stopped service and is answered;
#   5. systemctl reload with a new profile, with a broken file (the old one
#      stays), systemctl restart keeping the cache with the policy host down;
#   6. TLS-RPT (Debian 13's Postfix 3.10 only; skipped on 12 with the reason):
#      the chrooted smtp(8) reports to [tlsrpt]'s socket, mtastsd tlsrpt show
#      has the counts, and the daemon mails the reports from its sandbox
#      (examples/tlsrpt-mail.conf) to a mailbox of the container; the sysctl
#      drop-in is checked on both;
#   7. rsyslog: the daemon's lines in /var/log/mail.log with ident mtastsd;
#   8. apt purge (only the system user left), then an upgrade from the
#      previous build (the unchanged conffile replaced without a question,
#      the cache kept) and a purge again.
# Before that, on the host: the man pages through man --warnings and a check
# that every command of mtastsd(8) has its own entry.
#
# The containers' network is private: tools/system-world (the suite's DNS and
# HTTPS fixtures plus two SMTP hosts) plays the Internet inside each one.
# Needs root, systemd-container (systemd-nspawn), mmdebstrap, man-db, cargo-deb;
# .ci/run installs them. The roots are made once (packaging/system-test/
# make-root.sh, about a minute each) and never changed: each run boots an
# ephemeral copy. Usage: system-test.sh [bookworm] [trixie] (default: both).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "system-test${release:+ [$release]}: $*"; }
fail() {
    echo "system-test${release:+ [$release]}: FAIL: $*" >&2
    if [ -n "${cpid:-}" ]; then
        echo "---- journalctl -u mtastsd (last 60 lines)" >&2
        ct journalctl --no-pager -n 60 -u mtastsd -u mtastsd.socket >&2 || true
        echo "---- Postfix's log, /var/log/mail.log (last 40 lines)" >&2
        ct tail -n 40 /var/log/mail.log >&2 || true
        echo "---- system-world" >&2
        ct journalctl --no-pager -n 20 -u system-world >&2 || true
    fi
    exit 1
}

# Any other failing command fails the test the same way, naming itself.
set -E
trap 'rc=$?; trap - ERR; fail "$BASH_COMMAND: exit status $rc (lines ${BASH_LINENO[*]})"' ERR
[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn)"
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(bookworm trixie)
started=$(date +%s)

# ------------------------------------------------------------------ man pages
check_man_pages() {
    local page out
    for page in packaging/man/*.[0-9]; do
        out=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) ||
            fail "man -l $page failed: $out"
        [ -z "$out" ] || fail "man --warnings -l $page: $out"
    done
    # Every command of the synopsis has its own entry (a tag line) in mtastsd(8).
    local text cmd
    text=$(MANWIDTH=80 LC_ALL=C.UTF-8 man -l packaging/man/mtastsd.8 2>/dev/null)
    for cmd in $(sed -n '/^SYNOPSIS/,/^DESCRIPTION/s/^       mtastsd \([a-z][a-z-]*\).*/\1/p' <<<"$text" | sort -u); do
        grep -Eq "^       $cmd( |\$)" <<<"$text" ||
            fail "mtastsd(8): the command $cmd has no entry of its own: $(grep -E "^ +$cmd " <<<"$text" | grep -v mtastsd | head -2)"
    done
    step "man pages: man --warnings quiet, every command of mtastsd(8) has its own entry"
}
check_man_pages

# ------------------------------------------------------------------ the packages
target="${CARGO_TARGET_DIR:-target}"
version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="mtastsd"))')
if [ -n "${MTASTSD_DEB:-}" ]; then
    # Another build under test (e.g. an older one, to see a step fail).
    deb=$MTASTSD_DEB
    version=$(dpkg-deb -f "$deb" Version)
    version=${version%-*}
else
    step "building the package (cargo build --release, cargo deb --no-build)"
    cargo build --locked --release -q
    cargo deb --locked --no-build -q >/dev/null
    deb="$target/debian/mtastsd_${version}-1_amd64.deb"
fi
[ -f "$deb" ] || fail "no $deb"
# lintian's manual-page checks on the pages as packaged, info tags included.
rc=0
out=$(lintian -C documentation/manual --fail-on error,warning,info --display-info --pedantic "$deb" 2>&1) || rc=$?
out=$(grep -v "running with root privileges" <<<"$out" || true)
[ "$rc" = 0 ] && [ -z "$out" ] || fail "lintian (manual pages), exit $rc: $out"
step "lintian -C documentation/manual: no tags"
cargo build --locked -q --example system-world
previous=$(packaging/system-test/previous-deb.sh)
step "previous build: $(basename "$previous")"

work=$(mktemp -d)
chmod 755 "$work"
mkdir -p "$work/src/target/debian" "$work/prev"
cp "$deb" "$work/src/target/debian/"
cp "$previous" "$work/prev/"
cp "$target/debug/examples/system-world" "$work/"
cp contrib/systemd/chroot.conf "$work/"

nspawn_pid=
cpid=
stop_container() {
    if [ -n "$nspawn_pid" ]; then
        # SIGTERM: nspawn shuts the container down in order. Past 30 s, SIGKILL
        # to the container's init ends every process of its PID namespace.
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            [ -z "$cpid" ] || kill -KILL "$cpid" 2>/dev/null || true
            sleep 1
            kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    nspawn_pid=
    cpid=
    rm -rf "$work/root"
}
cleanup() {
    stop_container
    rm -rf "$work"
}
trap cleanup EXIT

# ct: runs a command inside the container (all its namespaces), as root.
ct() { nsenter -t "$cpid" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
# A file of the container, seen from the host.
at() { echo "/proc/$cpid/root$1"; }

boot() { # $1: root directory
    # A copy of the cached root, removed with $work (nspawn's --ephemeral copy
    # stays behind when nspawn is killed).
    cp -a --reflink=auto "$1" "$work/root"
    systemd-nspawn --quiet --boot --register=no --keep-unit \
        --private-network --console=passive --resolv-conf=off --timezone=off \
        --machine="mtastsd-$release" --directory="$work/root" \
        --bind-ro="$work:/mnt/test" --bind-ro="$work/src:/mnt/src" --bind-ro="$work/prev:/mnt/prev" \
        >"$work/nspawn-$release.log" 2>&1 &
    nspawn_pid=$!
    local child
    for _ in $(seq 300); do
        child=$(pgrep -P "$nspawn_pid" | head -1 || true)
        if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
            cpid=$child
            break
        fi
        kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited: $(cat "$work/nspawn-$release.log")"
        sleep 0.1
    done
    [ -n "$cpid" ] || fail "no systemd in the container"
    local state=
    # Until systemd answers on its bus; then until the boot is over.
    for _ in $(seq 600); do
        state=$(timeout 120 nsenter -t "$cpid" -a -- systemctl is-system-running --wait 2>/dev/null || true)
        case "$state" in running | degraded) break ;; esac
        sleep 0.1
    done
    case "$state" in
        running | degraded) ;;
        *) fail "container did not boot: $state" ;;
    esac
    step "booted $(ct cat /etc/debian_version) with systemd $(ct systemctl --version | head -1 | cut -d' ' -f2) ($state)"
}

# Postfix's log from the line after $1 (the line count when the step began).
mail_log_since() { ct tail -n +"$(($1 + 1))" /var/log/mail.log; }
mail_log_lines() { ct sh -c 'wc -l </var/log/mail.log 2>/dev/null || echo 0'; }

# sendmail to each "rcpt=status" pair, then wait for Postfix's verdict on each.
send_and_expect() { # label, then rcpt=sent|deferred...
    local label=$1 from pair rcpt want got deadline
    shift
    from=$(mail_log_lines)
    for pair in "$@"; do
        rcpt=${pair%=*}
        printf 'Subject: %s\nFrom: root@sender.test\nTo: %s\n\nsystem test\n' "$label" "$rcpt" |
            ct /usr/sbin/sendmail -f root@sender.test "$rcpt"
    done
    deadline=$(($(date +%s) + 60))
    for pair in "$@"; do
        rcpt=${pair%=*}
        want=${pair#*=}
        while :; do
            got=$(mail_log_since "$from" | grep -F "to=<$rcpt>" | grep -Eo 'status=(sent|deferred|bounced)' | head -1 || true)
            [ -n "$got" ] && break
            [ "$(date +%s)" -lt "$deadline" ] || fail "$label: no verdict for $rcpt in Postfix's log after 60 s"
            sleep 0.5
        done
        [ "$got" = "status=$want" ] ||
            fail "$label: $rcpt: $got, expected status=$want: $(mail_log_since "$from" | grep -F "to=<$rcpt>" | head -1)"
        step "$label: $rcpt $got: $(mail_log_since "$from" | grep -F "to=<$rcpt>" | grep -o 'relay=[^,]*' | head -1)"
    done
}

# postmap -q through the daemon: $1 key, $2 map (default: the README's), $3 expected.
expect_answer() {
    local key=$1 map=$2 want=$3 got
    # Polled for up to 5 s: systemctl reload returns once the signal is sent.
    for _ in $(seq 50); do
        got=$(ct sh -c "cd /var/spool/postfix && postmap -q '$key' '$map'" 2>&1 || true)
        [ "$got" = "$want" ] && break
        sleep 0.1
    done
    [ "$got" = "$want" ] || fail "postmap -q $key $map: '$got', expected '$want'"
    step "postmap -q $key $map: ${got:-(nothing)}"
}
inet_map=socketmap:inet:127.0.0.1:8461:postfix
good_answer="secure match=mx.good.test servername=hostname"

journal_has() { # $1: grep -E pattern, $2: what
    for _ in $(seq 50); do
        ct journalctl --no-pager -o cat -u mtastsd | grep -Eq "$1" && return 0
        sleep 0.1
    done
    fail "journal: no line matching '$1' ($2)"
}

wait_active() { # $1: unit
    local state
    for _ in $(seq 100); do
        state=$(ct systemctl is-active "$1" || true)
        [ "$state" = active ] && return 0
        [ "$state" = failed ] && break
        sleep 0.1
    done
    fail "$1 is $state"
}

# ------------------------------------------------------------------ the steps
world_up() {
    # The MX hosts listen on 127.0.0.2 and 127.0.0.3 port 25: Postfix's own
    # smtpd must keep to 127.0.0.1. Restarted below, for the copy of resolv.conf
    # in its chroot too.
    ct postconf -e inet_interfaces=loopback-only
    # Debian 12 runs Postfix as postfix@-.service under a postfix.service
    # wrapper; Debian 13 as postfix.service itself.
    postfix_units=postfix.service
    ct systemctl show -p Conflicts --value postfix.service | grep -q 'postfix@-' ||
        postfix_units="postfix.service postfix@-.service"
    ct systemctl stop $postfix_units
    ct mkdir -p /run/system-world
    ct systemd-run --quiet --unit=system-world /mnt/test/system-world /run/system-world
    for _ in $(seq 100); do [ -e "$(at /run/system-world/ready)" ] && break; sleep 0.1; done
    [ -e "$(at /run/system-world/ready)" ] || fail "system-world did not start"
    # The container's resolver is the world's DNS; its CA is trusted system-wide
    # (ca-certificates.crt, read by mtastsd and by Postfix's smtp_tls_CAfile).
    echo "nameserver 127.0.0.1" >"$(at /etc/resolv.conf)"
    ct cp /run/system-world/ca.pem /usr/local/share/ca-certificates/mtastsd-test.crt
    ct update-ca-certificates >/dev/null 2>&1
    ct systemctl start $postfix_units
    step "system-world: DNS, policy hosts and MX hosts up; Postfix $(ct postconf -h mail_version)"
}

install_package() {
    local out qlen_before
    qlen_before=$(ct cat /proc/sys/net/unix/max_dgram_qlen)
    out=$(ct sh -c 'cd /mnt/src && DEBIAN_FRONTEND=noninteractive apt install -y ./target/debian/mtastsd_*_amd64.deb' 2>&1 </dev/null) ||
        fail "apt install: $out"
    step "apt install ./target/debian/$(basename "$deb"): ok"
    wait_active mtastsd
    step "systemctl is-active mtastsd: active"
    # 60-mtastsd.conf, applied by the postinst in the container's own network
    # namespace (systemd itself raises the kernel's 10 to 512 at boot).
    local qlen
    qlen=$(ct cat /proc/sys/net/unix/max_dgram_qlen)
    [ "$qlen" = 1024 ] || fail "net.unix.max_dgram_qlen is $qlen after apt install, not 1024 (/usr/lib/sysctl.d/60-mtastsd.conf)"
    step "sysctl: net.unix.max_dgram_qlen = $qlen ($qlen_before before the package)"
    journal_has "Started mtastsd.service|Started MTA-STS policy daemon" "the start"
    step "journal: $(ct journalctl --no-pager -o cat -u mtastsd | grep -E 'Started' | tail -1)"
    local exposure readme_figure
    exposure=$(ct systemd-analyze security mtastsd.service | tail -1)
    readme_figure=$(grep -Eo 'rates [0-9.]+ in' README.md | head -1 | cut -d' ' -f2)
    grep -q "exposure level for mtastsd.service: $readme_figure " <<<"$exposure" ||
        fail "systemd-analyze security: '$exposure', the README says $readme_figure"
    step "systemd-analyze security: $exposure (README: $readme_figure)"
    expect_answer '[192.0.2.1]' "$inet_map" ""
    expect_answer good.test "$inet_map" "$good_answer"
}

configure_postfix() {
    # README "Postfix": the one line, and the CA file for "secure".
    ct sed -i '/^smtp_tls_policy_maps/d;/^smtp_tls_CAfile/d' /etc/postfix/main.cf
    cat >>"$(at /etc/postfix/main.cf)" <<EOF
smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix
smtp_tls_CAfile = /etc/ssl/certs/ca-certificates.crt
EOF
    ct postfix reload 2>/dev/null
    step "main.cf: smtp_tls_policy_maps = $(ct postconf -h smtp_tls_policy_maps), postfix reload"
}

mail_inet() {
    send_and_expect "mail over inet" inet@good.test=sent inet@badcert.test=deferred \
        inet@testing.test=sent inet@none.test=sent
    local reason
    reason=$(mail_log_since 0 | grep -F 'to=<inet@badcert.test>' | grep -o 'status=deferred.*' | head -1)
    grep -qi "certificate" <<<"$reason" || fail "badcert.test deferred for another reason: $reason"
}

chroot_variant() {
    # examples/chroot.conf's own steps, 1 to 4.
    chroot_on
    ct postconf -e smtp_tls_policy_maps=socketmap:unix:mtastsd/socketmap:postfix
    ct systemctl daemon-reload
    ct systemctl restart mtastsd || fail "chroot.conf: systemctl restart mtastsd failed"
    wait_active mtastsd
    ct postfix reload 2>/dev/null
    local socket
    socket=$(ct stat -c '%U:%G %a' /var/spool/postfix/mtastsd/socketmap) || fail "no socket in the spool"
    [ "$socket" = "mtastsd:postfix 660" ] || fail "the socket is $socket, not mtastsd:postfix 660"
    local dir
    dir=$(ct stat -c '%U:%G %a' /var/spool/postfix/mtastsd)
    [ "$dir" = "mtastsd:postfix 2750" ] || fail "/var/spool/postfix/mtastsd is $dir, not mtastsd:postfix 2750"
    step "chroot.conf: mtastsd active, /var/spool/postfix/mtastsd $dir, socketmap $socket"
    expect_answer good.test socketmap:unix:mtastsd/socketmap:postfix "$good_answer"
    [ "$(ct postconf -h smtp_tls_policy_maps)" = socketmap:unix:mtastsd/socketmap:postfix ] || fail "main.cf"
    grep -Eq '^smtp +unix +- +- +y ' "$(at /etc/postfix/master.cf)" || fail "smtp(8) is not chrooted in master.cf"
    send_and_expect "mail through the unix socket, chrooted smtp(8)" chroot@good.test=sent chroot@badcert.test=deferred
    chroot_off
}

# examples/chroot.conf's steps 1 and 2: the drop-in, the unix socket in the spool.
chroot_on() {
    ct mkdir -p /etc/systemd/system/mtastsd.service.d
    ct cp /usr/share/doc/mtastsd/examples/chroot.conf /etc/systemd/system/mtastsd.service.d/chroot.conf
    ct cp /etc/mtastsd/mtastsd.toml /root/mtastsd.toml.orig
    python3 - "$(at /etc/mtastsd/mtastsd.toml)" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
for key, value in [("listen", '["127.0.0.1:8461", "unix:/var/spool/postfix/mtastsd/socketmap"]'),
                   ("unix_group", '"postfix"'), ("unix_mode", '"0660"')]:
    text, n = re.subn(rf"^#?{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    assert n == 1, key
open(path, "w").write(text)
EOF
}

# Back to the README's set-up for the next steps: no drop-in, the packaged
# configuration, the socketmap over TCP.
chroot_off() {
    ct rm -r /etc/systemd/system/mtastsd.service.d /var/spool/postfix/mtastsd
    ct cp /root/mtastsd.toml.orig /etc/mtastsd/mtastsd.toml
    ct postconf -e smtp_tls_policy_maps=socketmap:inet:127.0.0.1:8461:postfix
    ct systemctl daemon-reload
    ct systemctl reset-failed mtastsd.service
    ct systemctl restart mtastsd
    wait_active mtastsd
    ct postfix reload 2>/dev/null
}

socket_activation() {
    # README.Debian's steps.
    ct cp /usr/share/doc/mtastsd/examples/mtastsd.socket /etc/systemd/system/
    ct systemctl daemon-reload
    ct systemctl stop mtastsd.service
    ct systemctl enable --quiet --now mtastsd.socket
    ct systemctl start mtastsd.service
    wait_active mtastsd.socket
    wait_active mtastsd.service
    journal_has "socket activation: serving 1 socket" "the inherited socket"
    ct systemctl stop mtastsd.service 2>/dev/null
    [ "$(ct systemctl is-active mtastsd.service || true)" = inactive ] || fail "mtastsd.service did not stop"
    step "socket activation: mtastsd.service stopped, mtastsd.socket $(ct systemctl is-active mtastsd.socket)"
    expect_answer good.test "$inet_map" "$good_answer"
    wait_active mtastsd.service
    step "socket activation: the lookup started mtastsd.service and was answered"
    send_and_expect "mail while socket-activated" socket@good.test=sent socket@badcert.test=deferred
    ct systemctl disable --quiet --now mtastsd.socket
    ct rm /etc/systemd/system/mtastsd.socket
    ct systemctl daemon-reload
    ct systemctl reset-failed mtastsd.service
    ct systemctl restart mtastsd.service
    wait_active mtastsd.service
}

reload_restart() {
    local conf main_pid
    conf=$(at /etc/mtastsd/mtastsd.toml)
    cp "$conf" "$work/mtastsd.toml.orig"
    expect_answer testing.test socketmap:inet:127.0.0.1:8461:postfix ""
    main_pid=$(ct systemctl show -p MainPID --value mtastsd)
    printf '\n[profiles.strict]\nstrict_testing = true\n' >>"$conf"
    ct systemctl reload mtastsd || fail "systemctl reload mtastsd failed"
    [ "$(ct systemctl show -p MainPID --value mtastsd)" = "$main_pid" ] || fail "reload restarted the daemon"
    expect_answer testing.test socketmap:inet:127.0.0.1:8461:strict "secure match=mx.testing.test servername=hostname"
    step "systemctl reload: the new profile answers, same process $main_pid"
    cp "$conf" "$work/mtastsd.toml.strict"
    printf '\n[profiles.broken]\nno_such_key = 1\n' >>"$conf"
    ct systemctl reload mtastsd || fail "systemctl reload mtastsd (broken file) failed"
    journal_has "no_such_key" "why the broken file was refused"
    wait_active mtastsd
    expect_answer testing.test socketmap:inet:127.0.0.1:8461:strict "secure match=mx.testing.test servername=hostname"
    step "systemctl reload with a broken file: old configuration kept; journal: $(ct journalctl --no-pager -o cat -u mtastsd | grep no_such_key | tail -1)"
    cp "$work/mtastsd.toml.orig" "$conf"
    ct systemctl reload mtastsd
    # The cache across a restart, with the policy host unreachable.
    ct touch /run/system-world/policy-host-down
    ct systemctl restart mtastsd
    wait_active mtastsd
    [ "$(ct systemctl show -p MainPID --value mtastsd)" != "$main_pid" ] || fail "restart kept the process"
    expect_answer good.test "$inet_map" "$good_answer"
    step "systemctl restart with the policy host down: the enforce answer stays"
    ct rm /run/system-world/policy-host-down
}

# Moves the TLS-RPT store's counts $1 days back (SPEC 8.2's schema: days since
# 1970-01-01 UTC), mtastsd stopped. On a copy, on the host: the roots have no
# sqlite3 tool, and SQLite resolves the symbolic link /proc/PID/root to the
# host's own root. Copied back in place, owner and mode kept.
store_days_back() {
    local store
    store=$(at /var/lib/mtastsd/tlsrpt.sqlite)
    [ ! -e "$store-wal" ] || fail "tlsrpt.sqlite-wal is still there with mtastsd stopped"
    cp "$store" "$work/tlsrpt.sqlite"
    python3 - "$work/tlsrpt.sqlite" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    for table in ("session", "failure"):
        db.execute(f"UPDATE {table} SET day = day - ?", (int(sys.argv[2]),))
db.close()
EOF
    cat "$work/tlsrpt.sqlite" >"$store"
    rm -f "$work"/tlsrpt.sqlite*
}

# mtastsd tlsrpt show --json in the container, as user mtastsd, summed up as
# "DOMAIN successful/failed [RESULT-TYPE RECEIVING-MX COUNT]... [URI STATE]...; "
# per domain: the counts, failure details and report deliveries of the day.
tlsrpt_show() {
    ct setpriv --reuid=mtastsd --regid=mtastsd --init-groups -- mtastsd tlsrpt show --json "$@" >"$work/show.json"
    python3 - "$work/show.json" <<'EOF'
import json, sys
for d in json.load(open(sys.argv[1]))["domains"]:
    ok = sum(p["successful"] for p in d["policies"])
    failed = sum(p["failed"] for p in d["policies"])
    details = [f"{f['result-type']} {f.get('receiving-mx-hostname', '')} {f['count']}"
               for p in d["policies"] for f in p["failure-details"]]
    sent = [f"{x['uri']} {x['state']}" for x in (d["report"] or {}).get("deliveries", [])]
    print(" ".join([d["domain"], f"{ok}/{failed}", *details, *sent]), end="; ")
EOF
}

tlsrpt_variant() {
    if [ -z "$(ct postconf -dh smtp_tlsrpt_enable 2>/dev/null)" ]; then
        step "TLS-RPT: skipped: Postfix $(ct postconf -h mail_version) has no smtp_tlsrpt_enable (Postfix 3.10 and later)"
        return
    fi
    # README "TLS-RPT": the chroot set-up (the socket's directory), [tlsrpt],
    # examples/tlsrpt-mail.conf for mailed reports, and main.cf's two lines.
    chroot_on
    ct cp /usr/share/doc/mtastsd/examples/tlsrpt-mail.conf /etc/systemd/system/mtastsd.service.d/tlsrpt-mail.conf
    # delay: the smallest, so that the report of a finished day is due at once.
    cat >>"$(at /etc/mtastsd/mtastsd.toml)" <<'EOF'

[tlsrpt]
send = true
organization_name = "mtastsd system test"
contact_info = "tlsrpt-noreply@sender.test"
delay = "1s"

[profiles.tlsrpt]
tlsrpt = true
EOF
    # The queue of the socket is fixed when mtastsd makes it (SPEC 8.1): the
    # package's sysctl must be in force in this network namespace before.
    local qlen
    qlen=$(ct cat /proc/sys/net/unix/max_dgram_qlen)
    [ "$qlen" = 1024 ] || fail "net.unix.max_dgram_qlen is $qlen before mtastsd starts with [tlsrpt], not 1024"
    ct systemctl daemon-reload
    ct systemctl restart mtastsd || fail "[tlsrpt]: systemctl restart mtastsd failed"
    wait_active mtastsd
    local socket
    socket=$(ct stat -c '%F %U:%G %a' /var/spool/postfix/mtastsd/tlsrpt) || fail "no TLS-RPT socket in the spool"
    [ "$socket" = "socket mtastsd:postfix 660" ] || fail "the TLS-RPT socket is $socket, not socket mtastsd:postfix 660"
    step "TLS-RPT: mtastsd active with [tlsrpt] (net.unix.max_dgram_qlen $qlen), /var/spool/postfix/mtastsd/tlsrpt $socket"
    # Earlier steps' deferred mail would add sessions when retried.
    ct postsuper -d ALL deferred 2>/dev/null
    # Postfix 3.10 looks up _smtp._tls and reports only when the global level
    # is not "none" (the default, and that of Debian's main.cf without ssl-cert).
    ct postconf -e smtp_tlsrpt_enable=yes smtp_tlsrpt_socket_name=mtastsd/tlsrpt smtp_tls_security_level=may \
        smtp_tls_policy_maps=socketmap:unix:mtastsd/socketmap:tlsrpt
    ct postfix reload 2>/dev/null
    ct id reports >/dev/null 2>&1 || ct useradd reports
    send_and_expect "TLS-RPT, chrooted smtp(8)" tlsrpt@good.test=sent tlsrpt@badcert.test=deferred
    # Committed every second (SPEC 8.2); read as the administrator would, with
    # mtastsd tlsrpt show (as user mtastsd: the store's files stay its own).
    local want got day
    day=$(date -u +%F)
    want="badcert.test 0/1 certificate-host-mismatch mx.badcert.test 1; good.test 1/0; "
    for _ in $(seq 50); do
        got=$(tlsrpt_show --day "$day" 2>&1 || true)
        [ "$got" = "$want" ] && break
        sleep 0.2
    done
    [ "$got" = "$want" ] || fail "mtastsd tlsrpt show --day $day --json: '$got', expected '$want'"
    step "TLS-RPT: mtastsd tlsrpt show --day $day --json: $got"
    # Reports are built after their UTC day ends and settles (SPEC 8.4). Rather
    # than wait for midnight, the counts move two days back while the daemon is
    # stopped (one day is not enough in the first minutes of a UTC day); its
    # sender's first round after the start then finds that day's reports due.
    ct systemctl stop mtastsd
    store_days_back 2
    day=$(date -u -d "$day - 2 days" +%F)
    local from
    from=$(mail_log_lines)
    ct systemctl start mtastsd
    wait_active mtastsd
    journal_has "TLS-RPT: report for badcert.test on .* to mailto:reports@sender.test: sent" "the report handed to sendmail"
    local deadline=$(($(date +%s) + 30))
    until [ "$(mail_log_since "$from" | grep -c 'to=<reports@sender.test>.*status=sent')" = 2 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "TLS-RPT: the two report mails were not delivered to reports@sender.test within 30 s"
        sleep 0.2
    done
    # The mailbox, read as a receiver would (SPEC 8.4, RFC 8460 §5.3); each
    # attachment is the report mtastsd tlsrpt report shows as sent.
    local checked domain
    for domain in good.test badcert.test; do
        ct setpriv --reuid=mtastsd --regid=mtastsd --init-groups -- \
            mtastsd tlsrpt report "$domain" --day "$day" >"$work/report-$domain.json"
    done
    checked=$(python3 - "$(at /var/mail/reports)" "$work" 2>&1 <<'EOF'
import gzip, json, mailbox, re, sys
want = {"good.test": (1, 0), "badcert.test": (0, 1)}
seen = {}
for msg in mailbox.mbox(sys.argv[1]):
    def field(name):  # unfolded (RFC 5322 §2.2.3)
        return re.sub(r"\r?\n", "", msg[name] or "")
    domain = field("TLS-Report-Domain")
    assert field("TLS-Report-Submitter") == "sender.test", field("TLS-Report-Submitter")
    assert field("TLS-Required") == "No", field("TLS-Required")
    assert re.fullmatch(r"(.*<)?tlsrpt-noreply@sender\.test>?", field("From")), field("From")
    assert re.fullmatch(rf"Report Domain: {re.escape(domain)} Submitter: sender\.test Report-ID: <[^>]+>",
                        field("Subject")), field("Subject")
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt", msg["Content-Type"]
    parts = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
    name = parts[0].get_filename()
    assert name.startswith(f"sender.test!{domain}!") and name.endswith(".json.gz"), name
    report = json.loads(gzip.decompress(parts[0].get_payload(decode=True)))
    assert report == json.load(open(f"{sys.argv[2]}/report-{domain}.json")), "not the report tlsrpt report shows"
    assert report["organization-name"] == "mtastsd system test", report
    (policy,) = report["policies"]
    assert policy["policy"]["policy-type"] == "sts", policy["policy"]
    assert policy["policy"]["policy-domain"] == domain, policy["policy"]
    summary = policy["summary"]
    seen[domain] = (summary["total-successful-session-count"], summary["total-failure-session-count"])
assert seen == want, seen
print(" ".join(f"{d} {s}/{f}" for d, (s, f) in sorted(seen.items())))
EOF
    ) || fail "TLS-RPT: the report mails in /var/mail/reports: $checked"
    step "TLS-RPT: report mails from the daemon's sandbox delivered to /var/mail/reports: $checked (successful/failed)"
    want="badcert.test 0/1 certificate-host-mismatch mx.badcert.test 1 mailto:reports@sender.test sent; good.test 1/0 mailto:reports@sender.test sent; "
    got=$(tlsrpt_show --day "$day" 2>&1 || true)
    [ "$got" = "$want" ] || fail "mtastsd tlsrpt show --day $day --json after sending: '$got', expected '$want'"
    step "TLS-RPT: mtastsd tlsrpt show --day $day --json: $got"
    ct postconf -X smtp_tlsrpt_enable smtp_tlsrpt_socket_name smtp_tls_security_level
    chroot_off
}

syslog_lines() {
    local lines
    lines=$(ct grep -E '^.{0,40} mtastsd-test mtastsd\[[0-9]+\]: |^.{0,40} mtastsd-test mtastsd: ' /var/log/mail.log || true)
    [ -n "$lines" ] || fail "no line with ident mtastsd in /var/log/mail.log"
    step "rsyslog: $(wc -l <<<"$lines") lines of mtastsd in /var/log/mail.log, e.g. $(tail -1 <<<"$lines")"
}

purge_and_check() { # $1: label
    local out left
    out=$(ct sh -c 'DEBIAN_FRONTEND=noninteractive apt purge -y mtastsd' 2>&1 </dev/null) || fail "apt purge: $out"
    left=$(ct sh -c 'ls -d /usr/sbin/mtastsd /etc/mtastsd /var/lib/mtastsd /run/mtastsd /usr/lib/systemd/system/mtastsd.* \
        /etc/systemd/system/*/mtastsd.* /etc/systemd/system/mtastsd* /usr/share/doc/mtastsd /usr/share/man/man8/mtastsd.8.gz \
        /usr/share/man/man5/mtastsd.toml.5.gz 2>/dev/null' || true)
    [ -z "$left" ] || fail "left behind after apt purge: $left"
    ct id mtastsd >/dev/null || fail "the system user is gone"
    [ "$(ct systemctl is-active mtastsd || true)" != active ] || fail "still running after purge"
    step "$1: apt purge leaves nothing but the system user ($(ct id mtastsd))"
}

upgrade() {
    local out conf_sum
    out=$(ct sh -c 'DEBIAN_FRONTEND=noninteractive apt install -y /mnt/prev/*.deb' 2>&1 </dev/null) ||
        fail "apt install of the previous build: $out"
    wait_active mtastsd
    expect_answer good.test "$inet_map" "$good_answer"
    # The conffile as the administrator left it: unchanged. dpkg must replace
    # it without asking, whether or not the new build changed it.
    ct touch /run/system-world/policy-host-down
    step "previous build $(ct dpkg-query -W -f '${Version}' mtastsd) active, good.test cached; policy host down"
    out=$(ct sh -c 'cd /mnt/src && DEBIAN_FRONTEND=noninteractive apt install -y ./target/debian/mtastsd_*_amd64.deb' 2>&1 </dev/null) ||
        fail "apt install (upgrade): $out"
    [ "$(ct dpkg-query -W -f '${Version}' mtastsd)" = "${version}-1" ] || fail "not upgraded"
    wait_active mtastsd
    conf_sum=$(ct dpkg-query -W -f '${Conffiles}' mtastsd | awk '$1 == "/etc/mtastsd/mtastsd.toml" { print $2 }')
    [ "$(md5sum <"$(at /etc/mtastsd/mtastsd.toml)" | cut -d' ' -f1)" = "$conf_sum" ] ||
        fail "/etc/mtastsd/mtastsd.toml is not the packaged file after the upgrade"
    left=$(ct sh -c 'ls /etc/mtastsd/*.dpkg-* 2>/dev/null' || true)
    [ -z "$left" ] || fail "dpkg left $left"
    grep -q good.test "$(at /var/lib/mtastsd/policies.json)" || fail "the saved cache is gone"
    expect_answer good.test "$inet_map" "$good_answer"
    step "upgraded to ${version}-1 without a question: the conffile is the packaged one, the cache kept (answered with the policy host down)"
    ct rm /run/system-world/policy-host-down
}

# A step restarts the service a few times within seconds; systemd's start rate
# limit (5 in 10 s) is for crash loops, not for this: each step starts afresh.
fresh() { ct systemctl reset-failed mtastsd.service mtastsd.socket 2>/dev/null || true; "$@"; }

# ------------------------------------------------------------------ per release
for release in "${releases[@]}"; do
    t0=$(date +%s)
    root=$(packaging/system-test/make-root.sh "$release")
    boot "$root"
    world_up
    install_package
    configure_postfix
    mail_inet
    fresh chroot_variant
    fresh socket_activation
    fresh reload_restart
    fresh tlsrpt_variant
    syslog_lines
    purge_and_check "after the tests"
    fresh upgrade
    purge_and_check "after the upgrade"
    t1=$(date +%s)
    stop_container
    step "ok in $(($(date +%s) - t0)) s (shut down in $(($(date +%s) - t1)) s)"
done
release=
step "ok: ${releases[*]} in $(($(date +%s) - started)) s"
