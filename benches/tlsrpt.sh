#!/usr/bin/env bash
# benches/tlsrpt.sh: the TLS-RPT collector (SPEC 8.1, 8.2) side by side with the
# reference collector, tlsrpt-collectd of the Python tlsrpt-reporter package (SQLite
# storage), in one run. See docs/BENCHMARKS.md. Linux only (taskset, /proc).
#
# 1. Drain rate: each collector pinned to COLLECTOR_CPU, fed by tools' tlsrpt-flood
#    pinned to SENDER_CPU: real Postfix datagrams (tests/golden/tlsrpt) over DOMAINS
#    domains from a blocking socket for SECONDS, so the rate achieved is the rate the
#    collector drains; then the collector is stopped and its database must count
#    every datagram sent.
# 2. mtastsd's memory after MILLION datagrams over 10 000 domains (VmRSS, VmHWM).
# 3. The socketmap's hot p99 (1 000 cached domains, 8 connections) without, with
#    RATE datagrams a second, and with a flood as fast as mtastsd drains, at the same
#    time (socketmap-load and tlsrpt-flood share SENDER_CPU, mtastsd's answers and
#    collector share COLLECTOR_CPU; the collector runs at nice +10).
#
# Settings (environment): SECONDS_EACH (10), DOMAINS (100), MILLION (1000000), RATE (20000),
# COLLECTOR_CPU (1), SENDER_CPU (0), VENV (/var/cache/mtastsd-bench/tlsrpt-venv:
# created with pip when missing), OUT (target/bench-tlsrpt), PORT (18470).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${SECONDS_EACH:-10}
DOMAINS=${DOMAINS:-100}
MILLION=${MILLION:-1000000}
COLLECTOR_CPU=${COLLECTOR_CPU:-1}
SENDER_CPU=${SENDER_CPU:-0}
VENV=${VENV:-/var/cache/mtastsd-bench/tlsrpt-venv}
OUT=${OUT:-target/bench-tlsrpt}
PORT=${PORT:-18470}

echo "== building release binaries" >&2
cargo build --release -p mtastsd -p socketmap-load >&2
BIN=target/release
mkdir -p "$OUT"
TMP=$(mktemp -d)
# shellcheck source=benches/common.sh
source benches/common.sh

if [[ ! -x $VENV/bin/tlsrpt-collectd ]]; then
    echo "== installing tlsrpt-reporter 0.6.0 into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q tlsrpt-reporter==0.6.0 >&2
fi

# Sum of a SQL expression over a SQLite file (python3's sqlite3: no sqlite3 CLI needed).
sql_sum() {
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0] or 0)" "$1" "$2"
}

wait_for_socket() {
    local i
    for i in $(seq 1 500); do
        [[ -S $1 ]] && return 0
        sleep 0.02
    done
    echo "no socket $1 after 10 s" >&2
    return 1
}

flood() {
    taskset -c "$SENDER_CPU" "$BIN/tlsrpt-flood" "$@"
}

sent_of() { sed -n 's/.*"sent":\([0-9]*\).*/\1/p' "$1"; }
rate_of() { sed -n 's/.*"rate":\([0-9]*\).*/\1/p' "$1"; }

# mtastsd with [tlsrpt] (collect only) on $TMP/m/tlsrpt, state in $TMP/m.
start_mtastsd() {
    local dir=$1 extra=${2:-}
    mkdir -p "$dir"
    write_config "$dir/mtastsd.toml" "$PORT" "127.0.0.1:9"
    printf '[cache]\nstate_dir = "%s"\n%s[tlsrpt]\nsocket = "%s/tlsrpt"\n' \
        "$dir" "$extra" "$dir" >>"$dir/mtastsd.toml"
    taskset -c "$COLLECTOR_CPU" "$BIN/mtastsd" serve --config "$dir/mtastsd.toml" \
        2>>"$OUT/mtastsd.log" &
    MTASTSD_PID=$!
    PIDS+=("$MTASTSD_PID")
    wait_for_socket "$dir/tlsrpt"
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

echo "== 1. drain rate, ${SECONDS_EACH} s each, $DOMAINS domains" >&2
R="$TMP/ref"
mkdir -p "$R"
taskset -c "$COLLECTOR_CPU" "$VENV/bin/tlsrpt-collectd" --storage "sqlite://$R/ref.sqlite" \
    --socketname "$R/ref.sock" --log_level warning --logfilename "$OUT/ref.log" \
    --pidfilename "$R/pid" &
REF_PID=$!
PIDS+=("$REF_PID")
wait_for_socket "$R/ref.sock"
flood "$R/ref.sock" --seconds "$SECONDS_EACH" --domains "$DOMAINS" >"$OUT/ref-flood.json"
# It commits after 5 s without datagrams (its sockettimeout); then stop it.
sleep 7
stop "$REF_PID"
REF_SENT=$(sent_of "$OUT/ref-flood.json")
REF_RATE=$(rate_of "$OUT/ref-flood.json")
REF_COUNTED=$(sql_sum "$R/ref.sqlite" "select sum(cntrtotal) from finalresults")

M="$TMP/m"
start_mtastsd "$M"
flood "$M/tlsrpt" --seconds "$SECONDS_EACH" --domains "$DOMAINS" >"$OUT/mtastsd-flood.json"
stop "$MTASTSD_PID"
M_SENT=$(sent_of "$OUT/mtastsd-flood.json")
M_RATE=$(rate_of "$OUT/mtastsd-flood.json")
M_COUNTED=$(sql_sum "$M/tlsrpt.sqlite" "select sum(successful + failed) from session")

echo "== 2. memory after $MILLION datagrams over 10 000 domains" >&2
M2="$TMP/m2"
start_mtastsd "$M2"
RSS_IDLE=$(rss_kib "$MTASTSD_PID")
flood "$M2/tlsrpt" --count "$MILLION" --domains 10000 >"$OUT/million.json"
sleep 2
RSS_AFTER=$(rss_kib "$MTASTSD_PID")
HWM=$(hwm_kib "$MTASTSD_PID")
stop "$MTASTSD_PID"
MIL_COUNTED=$(sql_sum "$M2/tlsrpt.sqlite" "select sum(successful + failed) from session")
DB_KIB=$(du -k "$M2/tlsrpt.sqlite" | cut -f1)

echo "== 3. socketmap p99 (1 000 cached domains) without and with a flood" >&2
M3="$TMP/m3"
mkdir -p "$M3"
"$BIN/gen-state" --dir "$M3" --pattern 'd{N}.bench.test' --key-count 1000 \
    --mx mx.example.net 2>/dev/null
start_mtastsd "$M3"
wait_ok "$PORT"
load() {
    taskset -c "$SENDER_CPU" "$BIN/socketmap-load" --target "127.0.0.1:$PORT" \
        --pattern 'd{N}.bench.test' --key-count 1000 --connections 8 --prime \
        --warmup 2 --duration "$SECONDS_EACH" --server-pid "$MTASTSD_PID" --json "$1" >/dev/null
}
load "$OUT/p99-quiet.json"
# A busy relay's rate (RATE, default 20 000 sessions a second: more than the
# reference collector drains), then as fast as mtastsd drains.
flood "$M3/tlsrpt" --seconds $((SECONDS_EACH + 4)) --domains "$DOMAINS" --rate "${RATE:-20000}" \
    >"$OUT/p99-rate-sender.json" &
FLOOD_PID=$!
load "$OUT/p99-rate.json"
wait "$FLOOD_PID"
flood "$M3/tlsrpt" --seconds $((SECONDS_EACH + 4)) --domains "$DOMAINS" >"$OUT/p99-flood-sender.json" &
FLOOD_PID=$!
load "$OUT/p99-flood.json"
wait "$FLOOD_PID"
stop "$MTASTSD_PID"
P99_SENT=$(( $(sent_of "$OUT/p99-rate-sender.json") + $(sent_of "$OUT/p99-flood-sender.json") ))
P99_COUNTED=$(sql_sum "$M3/tlsrpt.sqlite" "select sum(successful + failed) from session")

echo "# $(date -u +%FT%TZ) $(nproc) CPUs: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
echo "# collector on CPU $COLLECTOR_CPU, sender on CPU $SENDER_CPU"
printf '%-26s %10s %10s %10s %s\n' collector sent counted per_s lost
printf '%-26s %10s %10s %10s %s\n' "tlsrpt-collectd 0.6.0" "$REF_SENT" "$REF_COUNTED" "$REF_RATE" $((REF_SENT - REF_COUNTED))
printf '%-26s %10s %10s %10s %s\n' "mtastsd" "$M_SENT" "$M_COUNTED" "$M_RATE" $((M_SENT - M_COUNTED))
echo "# ratio mtastsd / reference: $(python3 -c "print(round($M_RATE / $REF_RATE, 1))")"
echo "# $MILLION datagrams over 10 000 domains: counted $MIL_COUNTED; RSS idle ${RSS_IDLE} KiB, after ${RSS_AFTER} KiB, peak ${HWM} KiB; tlsrpt.sqlite ${DB_KIB} KiB"
echo "# socketmap p99 (µs): quiet $(jget "$OUT/p99-quiet.json" p99); with ${RATE:-20000} datagrams/s $(jget "$OUT/p99-rate.json" p99); with a flood at full speed $(jget "$OUT/p99-flood.json" p99)"
echo "# socketmap throughput (rps): quiet $(jget "$OUT/p99-quiet.json" throughput_rps); with ${RATE:-20000}/s $(jget "$OUT/p99-rate.json" throughput_rps); full flood $(jget "$OUT/p99-flood.json" throughput_rps); datagrams sent $P99_SENT, counted $P99_COUNTED"
