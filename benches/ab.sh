#!/usr/bin/env bash
# benches/ab.sh: compare mtastsd builds under the same hot-cache load, interleaved
# (A B A B ...), so that the machine's drift between runs falls on every build alike.
# One change at a time is judged by the server's CPU per request, which does not
# depend on how fast the generator is. See docs/BENCHMARKS.md.
#
#   cp target/release/mtastsd /tmp/mtastsd.before   # ... change, rebuild ...
#   ./benches/ab.sh /tmp/mtastsd.before target/release/mtastsd
#
# Each build is started on the same gen-state cache, pinned to SERVER_CPU, with
# bench-dns answering its TXT re-checks; socketmap-load (pinned to LOAD_CPU) asks
# every key once (--prime), then measures. Settings (environment): SIZE (100000),
# ROUNDS (3), CONNS (8), WARMUP (2), DURATION (8), ORDER (round-robin), SERVER_CPU
# (0), LOAD_CPU (1), PORT_BASE (18480), MX (mx.example.net; see load.sh). A build may be a wrapper script (e.g. one
# that sets an environment variable and execs the binary).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-100000}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-8}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-8}
ORDER=${ORDER:-round-robin}
MX=${MX:-mx.example.net}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18480}
PORT=$((PORT_BASE + 1))
DNS_PORT=$((PORT_BASE + 3))
[[ $# -ge 1 ]] || {
    echo "usage: $0 MTASTSD [MTASTSD ...]" >&2
    exit 2
}

cargo build --release -p socketmap-load >&2
BIN=target/release
TMP=$(mktemp -d)
# shellcheck source=benches/common.sh
source benches/common.sh

"$BIN/gen-state" --dir "$TMP/state0" --key-count "$SIZE" --mx "$MX" 2>/dev/null
write_config "$TMP/mtastsd.toml" "$PORT" "127.0.0.1:$DNS_PORT"
taskset -c "$LOAD_CPU" "$BIN/bench-dns" --listen "127.0.0.1:$DNS_PORT" 2>/dev/null &
PIDS+=("$!")

printf '%-40s %5s %9s %7s %7s %9s %8s\n' build round "r/s" "p50 µs" "p99 µs" "CPU µs/req" \
    "sleeps/s"
declare -A SUM RUNS
for round in $(seq 1 "$ROUNDS"); do
    for build in "$@"; do
        rm -rf "$TMP/state"
        cp -r "$TMP/state0" "$TMP/state"
        taskset -c "$SERVER_CPU" "$build" serve --config "$TMP/mtastsd.toml" \
            --state-dir "$TMP/state" --log-level warn 2>>"$TMP/mtastsd.log" &
        pid=$!
        wait_ok "$PORT"
        taskset -c "$LOAD_CPU" "$BIN/socketmap-load" --target "127.0.0.1:$PORT" \
            --pattern 'd{N}.bench.test' --key-count "$SIZE" --order "$ORDER" \
            --connections "$CONNS" --prime --warmup "$WARMUP" --duration "$DURATION" \
            --server-pid "$pid" --json "$TMP/r.json" >/dev/null
        kill -TERM "$pid"
        wait "$pid" || true
        rps=$(jget "$TMP/r.json" throughput_rps)
        cpu=$(jget "$TMP/r.json" server_cpu_percent)
        per=$(awk -v c="$cpu" -v r="$rps" 'BEGIN { printf "%.2f", c * 10000 / r }')
        printf '%-40s %5d %9.0f %7.1f %7.1f %9s %8.0f\n' "$build" "$round" "$rps" \
            "$(jget "$TMP/r.json" p50)" "$(jget "$TMP/r.json" p99)" "$per" \
            "$(jget "$TMP/r.json" server_sleeps_per_s)"
        SUM[$build]=$(awk -v a="${SUM[$build]:-0}" -v b="$per" 'BEGIN { print a + b }')
        RUNS[$build]=$((${RUNS[$build]:-0} + 1))
    done
done
echo "# mean server CPU per request (µs), $SIZE domains, $CONNS connections:"
for build in "$@"; do
    awk -v b="$build" -v s="${SUM[$build]}" -v n="${RUNS[$build]}" \
        'BEGIN { printf "%-40s %.2f\n", b, s / n }'
done
