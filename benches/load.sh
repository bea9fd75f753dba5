#!/usr/bin/env bash
# benches/load.sh: hot-cache throughput, latency and memory of mtastsd, each figure
# next to the baseline server's (tools/socketmap-load) measured in the same run.
# See docs/BENCHMARKS.md. Linux only (taskset, /proc).
#
# For each cache size: the baseline server, then mtastsd (started on a gen-state
# cache, so no network is needed), each pinned to SERVER_CPU, loaded by
# socketmap-load pinned to LOAD_CPU with the same keys and connections.
# mtastsd's background TXT re-checks (one per domain on its first hit) are answered
# at once by bench-dns on loopback with the unchanged id, as most are in production.
#
# Settings (environment): SIZES ("1000 100000"), CONNS (8), WARMUP (2), DURATION (10),
# ROUNDS (1), SERVER_CPU (0), LOAD_CPU (1), OUT (target/bench-load: JSON reports and
# logs), CEILING (1: also measure the generator's own ceiling), SILENT_DNS (1: also
# run the largest size with a DNS server that never answers), PORT_BASE (18460),
# SPIN (0; 1: keep both CPUs out of idle with nice-19 busy loops, see below), MX
# (mx.example.net: every policy's mx; with {N}, e.g. mx.d{N}.bench.test, each
# domain's policy and answer differ, in mtastsd and in the baseline alike).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000 100000"}
CONNS=${CONNS:-8}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-target/bench-load}
CEILING=${CEILING:-1}
SILENT_DNS=${SILENT_DNS:-1}
SPIN=${SPIN:-0}
PORT_BASE=${PORT_BASE:-18460}
MTASTSD_PORT=$((PORT_BASE + 1))
BASELINE_PORT=$((PORT_BASE + 2))
DNS_PORT=$((PORT_BASE + 3))
MX=${MX:-mx.example.net}
ANSWER="secure match=$MX servername=hostname"
PATTERN='d{N}.bench.test'

echo "== building release binaries" >&2
cargo build --release -p mtastsd -p socketmap-load >&2
BIN=target/release

mkdir -p "$OUT"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d)
# shellcheck source=benches/common.sh
source benches/common.sh

# Run the generator against PORT (server SERVER_PID), JSON to FILE: every key once
# (--prime, not measured), then warm-up, then the measured window.
run_load() {
    local port=$1 size=$2 server_pid=$3 file=$4
    shift 4
    taskset -c "$LOAD_CPU" "$BIN/socketmap-load" --target "127.0.0.1:$port" \
        --pattern "$PATTERN" --key-count "$size" --connections "$CONNS" --prime \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$server_pid" \
        --json "$file" "$@" >"${file%.json}.txt"
}

start_baseline() {
    local size=$1 threads=${2:-1} cpu=${3:-$SERVER_CPU}
    local pin=(taskset -c "$cpu")
    [[ $cpu == any ]] && pin=()
    "${pin[@]}" "$BIN/socketmap-baseline" --listen "127.0.0.1:$BASELINE_PORT" \
        --pattern "$PATTERN" --key-count "$size" --answer "$ANSWER" --threads "$threads" \
        2>>"$OUT/baseline.log" &
    BASELINE_PID=$!
    PIDS+=("$BASELINE_PID")
    wait_ok "$BASELINE_PORT"
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# DNS re-checks go to bench-dns, or (silent) to a port where nothing answers.
write_config "$TMP/mtastsd.toml" "$MTASTSD_PORT" "127.0.0.1:$DNS_PORT"
write_config "$TMP/mtastsd-silent.toml" "$MTASTSD_PORT" "127.0.0.1:9"

taskset -c "$LOAD_CPU" "$BIN/bench-dns" --listen "127.0.0.1:$DNS_PORT" 2>"$OUT/bench-dns.log" &
PIDS+=("$!")

# SPIN=1: a busy loop at nice 19 on each of the two CPUs, so that neither goes idle
# between requests. On a VM an idle vCPU halts, and waking it again (the host's
# scheduler, an interrupt) costs tens of µs: a closed loop whose one side has slack
# then pays that in its tail latency. The spinners yield to anything else at once
# and take about 1.5 % of a busy CPU; both servers run with them.
if [ "$SPIN" = 1 ]; then
    for cpu in "$SERVER_CPU" "$LOAD_CPU"; do
        taskset -c "$cpu" nice -n 19 sh -c 'while :; do :; done' &
        PIDS+=("$!")
    done
fi

MT_STARTUP_MS="" MT_RSS_IDLE="" MT_RSS_AFTER="" MT_HWM=""
start_mtastsd() {
    local size=$1 config=$2 log=$3
    local state="$TMP/state-$size"
    if [[ ! -f $state/policies.json.orig ]]; then
        "$BIN/gen-state" --dir "$state" --pattern "$PATTERN" --key-count "$size" \
            --mx "$MX" 2>/dev/null
        cp "$state/policies.json" "$state/policies.json.orig"
    fi
    # Every run starts from the same generated file (mtastsd saves on shutdown).
    cp "$state/policies.json.orig" "$state/policies.json"
    local t0 t1
    t0=$(date +%s%N)
    taskset -c "$SERVER_CPU" "$BIN/mtastsd" serve --config "$config" \
        --listen "127.0.0.1:$MTASTSD_PORT" --state-dir "$state" --log-level warn \
        2>>"$log" &
    MTASTSD_PID=$!
    PIDS+=("$MTASTSD_PID")
    wait_ok "$MTASTSD_PORT"
    t1=$(date +%s%N)
    MT_STARTUP_MS=$(((t1 - t0) / 1000000))
    sleep 1
    MT_RSS_IDLE=$(rss_kib "$MTASTSD_PID")
}

ROWS=()
row() {
    # name base.json mtastsd.json
    local b=$2 m=$3
    local bt bp50 bp99 bp999 mt mp50 mp99 mp999 gb gm bc mc
    bt=$(jget "$b" throughput_rps) bp50=$(jget "$b" p50) bp99=$(jget "$b" p99)
    bp999=$(jget "$b" p99.9) gb=$(jget "$b" generator_cpu_percent)
    mt=$(jget "$m" throughput_rps) mp50=$(jget "$m" p50) mp99=$(jget "$m" p99)
    mp999=$(jget "$m" p99.9) gm=$(jget "$m" generator_cpu_percent)
    bc=$(jget "$b" server_cpu_percent) mc=$(jget "$m" server_cpu_percent)
    # Server sleeps per second (threads waiting in epoll): on a VM each is a halt.
    local bs ms
    bs=$(jget "$b" server_sleeps_per_s) ms=$(jget "$m" server_sleeps_per_s)
    local errs
    errs=$(($(jget "$m" malformed) + $(jget "$m" connection_errors) + $(jget "$b" malformed) + $(jget "$b" connection_errors)))
    local notok=$(($(jget "$m" requests) - $(jget "$m" OK)))
    ROWS+=("$(awk -v n="$1" -v bt="$bt" -v bp50="$bp50" -v bp99="$bp99" \
        -v bp999="$bp999" -v mt="$mt" -v mp50="$mp50" -v mp99="$mp99" -v mp999="$mp999" \
        -v bc="$bc" -v mc="$mc" -v gb="$gb" -v gm="$gm" -v e="$errs" -v no="$notok" \
        -v bs="$bs" -v ms="$ms" 'BEGIN {
        # Server CPU per request (µs): independent of how fast the generator is.
        bu = bc * 10000 / bt; mu = mc * 10000 / mt
        printf "%-18s %7.0f %5.1f %6.1f %7.1f | %7.0f %5.1f %6.1f %7.1f | %5.2f %5.2f | %3.0f/%3.0f %3.0f/%3.0f | %4.2f %4.2f %4.2f | %5.0f %5.0f | %d/%d\n",
            n, bt, bp50, bp99, bp999, mt, mp50, mp99, mp999, mt / bt, mp99 / bp99,
            bc, gb, mc, gm, bu, mu, mu / bu, bs, ms, e, no }')")
}

MEM=()
# mtastsd's start-up, memory and first-hit (prime) pass: mem_row NAME JSON.
mem_row() {
    MEM+=("$(awk -v n="$1" -v st="$MT_STARTUP_MS" -v idle="$MT_RSS_IDLE" \
        -v after="$MT_RSS_AFTER" -v hwm="$MT_HWM" -v ps="$(jget "$2" seconds)" \
        -v pr="$(jget "$2" rate_rps)" 'BEGIN {
        printf "%-22s %8d %10.1f %10.1f %10.1f | %8.2f %9.0f\n",
            n, st, idle / 1024, after / 1024, hwm / 1024, ps, pr }')")
}
for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        echo "== round $round, $size domains: baseline" >&2
        start_baseline "$size"
        run_load "$BASELINE_PORT" "$size" "$BASELINE_PID" "$OUT/baseline-$size-r$round.json"
        stop "$BASELINE_PID"

        echo "== round $round, $size domains: mtastsd" >&2
        start_mtastsd "$size" "$TMP/mtastsd.toml" "$OUT/mtastsd-$size.log"
        run_load "$MTASTSD_PORT" "$size" "$MTASTSD_PID" "$OUT/mtastsd-$size-r$round.json"
        MT_RSS_AFTER=$(rss_kib "$MTASTSD_PID")
        MT_HWM=$(hwm_kib "$MTASTSD_PID")
        stop "$MTASTSD_PID"
        row "$size r$round" "$OUT/baseline-$size-r$round.json" "$OUT/mtastsd-$size-r$round.json"
        mem_row "$size r$round" "$OUT/mtastsd-$size-r$round.json"
    done
done

if [[ $SILENT_DNS == 1 ]]; then
    size=${SIZES##* }
    echo "== $size domains, DNS silent (re-checks time out after 1 s)" >&2
    start_mtastsd "$size" "$TMP/mtastsd-silent.toml" "$OUT/mtastsd-silent-$size.log"
    run_load "$MTASTSD_PORT" "$size" "$MTASTSD_PID" "$OUT/mtastsd-silent-$size.json"
    MT_RSS_AFTER=$(rss_kib "$MTASTSD_PID")
    MT_HWM=$(hwm_kib "$MTASTSD_PID")
    stop "$MTASTSD_PID"
    row "$size silent DNS" "$OUT/baseline-$size-r$ROUNDS.json" "$OUT/mtastsd-silent-$size.json"
    mem_row "$size silent DNS" "$OUT/mtastsd-silent-$size.json"
fi

CEIL=()
if [[ $CEILING == 1 ]]; then
    size=${SIZES%% *}
    # The generator's ceiling: its CPU per request, pinned as in the table, then with
    # the baseline allowed on both cores, then with both sides on two threads.
    echo "== generator ceiling" >&2
    for setup in "1 $SERVER_CPU 1" "2 any 1" "2 any 2"; do
        read -r sthreads scpu gthreads <<<"$setup"
        start_baseline "$size" "$sthreads" "$scpu"
        f="$OUT/ceiling-s$sthreads-g$gthreads.json"
        if [[ $gthreads == 1 ]]; then
            run_load "$BASELINE_PORT" "$size" "$BASELINE_PID" "$f"
        else
            "$BIN/socketmap-load" --target "127.0.0.1:$BASELINE_PORT" --pattern "$PATTERN" \
                --key-count "$size" --connections "$CONNS" --warmup "$WARMUP" \
                --duration "$DURATION" --threads "$gthreads" --server-pid "$BASELINE_PID" \
                --json "$f" >"${f%.json}.txt"
        fi
        stop "$BASELINE_PID"
        gcpu=$(jget "$f" generator_cpu_percent)
        tput=$(jget "$f" throughput_rps)
        CEIL+=("$(printf '%-44s %8.0f %6.1f %6.1f %6.0f %5.0f %9.0f' \
            "baseline ${sthreads}t cpu=$scpu, generator ${gthreads}t" \
            "$tput" "$(jget "$f" p50)" "$(jget "$f" p99)" "$(jget "$f" server_cpu_percent)" "$gcpu" \
            "$(awk -v t="$tput" -v c="$gcpu" 'BEGIN { print (c > 0 ? t * 100 / c : 0) }')")")
    done
fi

echo
echo "# socketmap load: $CONNS connections, closed loop, warm-up $WARMUP s, $DURATION s measured"
echo "# servers on CPU $SERVER_CPU, generator on CPU $LOAD_CPU; latency in µs"
echo "# load average at start: $START_LOAD, at end: $(cut -d' ' -f1-3 /proc/loadavg); SPIN=$SPIN; MX=$MX"
echo
printf '%-18s %7s %5s %6s %7s | %7s %5s %6s %7s | %5s %5s | %7s %7s | %14s | %11s | %s\n' \
    "" "base" "p50" "p99" "p99.9" "mtastsd" "p50" "p99" "p99.9" "tput" "p99" \
    "CPU %" "CPU %" "CPU µs/req" "sleeps/s" "errors/"
printf '%-18s %7s %5s %6s %7s | %7s %5s %6s %7s | %5s %5s | %7s %7s | %14s | %11s | %s\n' \
    "domains, round" "r/s" "" "" "" "r/s" "" "" "" "ratio" "ratio" "base/gen" "mt/gen" \
    "base  mt ratio" "base    mt" "not OK"
printf '%s\n' "${ROWS[@]}"
echo
echo "# mtastsd: start-up (ms from exec to the first OK answer), memory (MiB), and the"
echo "# prime pass (every key asked once before the warm-up: each first hit starts a TXT re-check)"
printf '%-22s %8s %10s %10s %10s | %8s %9s\n' "domains" "start ms" "RSS idle" "RSS after" \
    "peak RSS" "prime s" "prime r/s"
printf '%s\n' "${MEM[@]}"
if ((${#CEIL[@]})); then
    echo
    echo "# generator ceiling ($size keys): gen max = r/s the generator makes per core-second"
    echo "# of its own CPU (its throughput if it had one core to itself and the server cost nothing)"
    printf '%-44s %8s %6s %6s %6s %5s %9s\n' "" "r/s" "p50" "p99" "base %" "gen %" "gen max"
    printf '%s\n' "${CEIL[@]}"
fi
echo
echo "# JSON reports and logs in $OUT/"
