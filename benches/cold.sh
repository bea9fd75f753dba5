#!/usr/bin/env bash
# benches/cold.sh: cold misses, proactive refresh and a million distinct domains,
# against a loopback MTA-STS world (tools/socketmap-load bench-world: DNS + HTTPS for
# dN.cold.test, certificates issued on demand by a test CA). See docs/BENCHMARKS.md.
# Linux only (taskset, /proc).
#
# mtastsd is pinned to SERVER_CPU; the world and the generator share LOAD_CPU.
# Every phase starts a fresh world (fresh counters, fresh CA) and a fresh mtastsd.
#
#  1. cold: one connection asks COLD_N new domains one after another; per-answer
#     p50/p99, next to bench-world probe's raw DNS RTT + TLS handshake + HTTP RTT.
#  2. burst: BURST_N new domains at once (one connection each); all must be OK and
#     the world must have seen exactly one TXT query and one fetch per domain.
#  3. refresh: mtastsd starts on REFRESH_N persisted policies fetched 25 h ago (due
#     for proactive refresh at its first scan, 30 s after start); its CPU time until
#     the world has served REFRESH_N fetches (or REFRESH_LIMIT s); a hot-cache load
#     runs meanwhile, to see what refreshing does to hot answers.
#  4. million: cache.size = CACHE_SIZE; MILLION_N distinct domains, MILLION_CONNS
#     connections, one pass; RSS peak and after.
#  5. recheck: RECHECK_N domains fetched once (cache.recheck = 60 s), then, once
#     their recheck is due, one pass of lookups at RECHECK_RATE/s that makes mtastsd
#     re-check every TXT id in the background (SPEC 5.4; ids unchanged: no fetch);
#     its CPU until the world has answered RECHECK_N more TXT queries, minus the CPU
#     of the same pass with nothing due. Then the latency of hot answers (one
#     connection, 1 000 domains) alone and while another such pass re-checks, and
#     the baseline server's under the same load.
#
# Settings (environment): COLD_N (1000), BURST_N (1000), REFRESH_N (100000),
# REFRESH_LIMIT (300), MILLION_N (300000), MILLION_CONNS (64), CACHE_SIZE (100000),
# RECHECK_N (100000), RECHECK_RATE (10000), PHASES ("cold burst refresh million recheck"), SERVER_CPU (0), LOAD_CPU (1),
# OUT (target/bench-cold), PORT_BASE (18560), MTASTSD (target/release/mtastsd: the
# build to measure).
set -euo pipefail
cd "$(dirname "$0")/.."

COLD_N=${COLD_N:-1000}
BURST_N=${BURST_N:-1000}
REFRESH_N=${REFRESH_N:-100000}
REFRESH_LIMIT=${REFRESH_LIMIT:-300}
MILLION_N=${MILLION_N:-300000}
MILLION_CONNS=${MILLION_CONNS:-64}
CACHE_SIZE=${CACHE_SIZE:-100000}
RECHECK_N=${RECHECK_N:-100000}
RECHECK_RATE=${RECHECK_RATE:-10000}
PHASES=${PHASES:-"cold burst refresh million recheck"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-target/bench-cold}
PORT_BASE=${PORT_BASE:-18560}
MTASTSD_PORT=$((PORT_BASE + 1))
DNS_PORT=$((PORT_BASE + 3))
HTTPS_PORT=$((PORT_BASE + 4))
PATTERN='d{N}.cold.test'
TCK=$(getconf CLK_TCK)

echo "== building release binaries" >&2
cargo build --release -p mtastsd -p socketmap-load >&2
BIN=target/release
MTASTSD=${MTASTSD:-$BIN/mtastsd}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

WORLD_PID=""
MTASTSD_PID=""
cleanup() {
    [ -n "$MTASTSD_PID" ] && kill "$MTASTSD_PID" 2>/dev/null && wait "$MTASTSD_PID" 2>/dev/null
    [ -n "$WORLD_PID" ] && kill "$WORLD_PID" 2>/dev/null && wait "$WORLD_PID" 2>/dev/null
    MTASTSD_PID=""
    WORLD_PID=""
    return 0
}
trap cleanup EXIT

# wstat KEY: a counter from the world's stats file.
wstat() { awk -v k="$1" '$1 == k { print $2 }' "$OUT/world.stats"; }
# cpu_s PID: utime + stime in seconds.
cpu_s() { awk -v t="$TCK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
# mib PID FIELD: VmRSS or VmHWM in MiB.
mib() { awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    echo "nothing listening on port $1" >&2
    return 1
}

start_world() {
    rm -f "$OUT/world.stats"
    taskset -c "$LOAD_CPU" "$BIN/bench-world" serve --dns "127.0.0.1:$DNS_PORT" \
        --https "127.0.0.1:$HTTPS_PORT" --ca-file "$OUT/ca.pem" \
        --stats "$OUT/world.stats" 2>"$OUT/world-$1.log" &
    WORLD_PID=$!
    wait_port "$HTTPS_PORT"
    sleep 1.2 # the first stats file
}

# start_mtastsd PHASE STATE_DIR CACHE_SIZE [RECHECK]
start_mtastsd() {
    cat >"$OUT/mtastsd-$1.toml" <<EOF
[server]
listen = ["127.0.0.1:$MTASTSD_PORT"]
max_connections = 5000
[dns]
nameservers = ["127.0.0.1:$DNS_PORT"]
timeout = "2s"
[fetch]
timeout = "10s"
ca_file = "$OUT/ca.pem"
https_port = $HTTPS_PORT
[cache]
state_dir = "$2"
size = $3
recheck = "${4:-60s}"
[log]
level = "warn"
EOF
    taskset -c "$SERVER_CPU" "$MTASTSD" serve --config "$OUT/mtastsd-$1.toml" \
        2>"$OUT/mtastsd-$1.log" &
    MTASTSD_PID=$!
    wait_port "$MTASTSD_PORT"
}

load() {
    taskset -c "$LOAD_CPU" "$BIN/socketmap-load" --target "127.0.0.1:$MTASTSD_PORT" \
        --pattern "$PATTERN" "$@"
}

# j FILE EXPR
j() { jq -r "$2" "$1"; }

RESULTS="$OUT/results.txt"
: >"$RESULTS"
say() { echo "$*" | tee -a "$RESULTS"; }
say "cold.sh $(date -u +%Y-%m-%dT%H:%MZ); uptime at start: $(uptime)"

counters() {
    sleep 1.5 # the world writes its stats every second
    say "  world: TXT $(wstat txt_queries) queries for $(wstat txt_domains) domains ($(wstat txt_repeated) asked more than once); A $(wstat a_queries) for $(wstat a_domains) ($(wstat a_repeated) repeated); AAAA $(wstat aaaa_queries); fetches $(wstat fetches) for $(wstat fetch_domains) domains ($(wstat fetch_repeated) repeated); TLS handshakes $(wstat handshakes); bad requests $(wstat bad_requests)"
}

for phase in $PHASES; do
    case $phase in
    cold)
        say "== 1. cold misses: $COLD_N new domains, one connection, one after another"
        start_world cold
        rm -rf "$OUT/state-cold"
        start_mtastsd cold "$OUT/state-cold" 100000
        load --connections 1 --key-count "$COLD_N" --once --server-pid "$MTASTSD_PID" \
            --json "$OUT/cold.json" >"$OUT/cold.txt"
        say "  mtastsd: OK $(j "$OUT/cold.json" .replies.OK)/$COLD_N, p50 $(j "$OUT/cold.json" '.latency_us.p50') µs, p90 $(j "$OUT/cold.json" '.latency_us.p90') µs, p99 $(j "$OUT/cold.json" '.latency_us.p99') µs, max $(j "$OUT/cold.json" '.latency_us.max') µs; mtastsd CPU $(j "$OUT/cold.json" '.server_cpu_percent // "?"') % of one core"
        counters
        taskset -c "$LOAD_CPU" "$BIN/bench-world" probe --dns "127.0.0.1:$DNS_PORT" \
            --https "127.0.0.1:$HTTPS_PORT" --ca-file "$OUT/ca.pem" --count "$COLD_N" \
            >"$OUT/probe.txt"
        sed 's/^/  raw /' "$OUT/probe.txt" | tee -a "$RESULTS"
        cleanup
        ;;
    burst)
        say "== 2. burst: $BURST_N new domains at once, one connection each"
        start_world burst
        rm -rf "$OUT/state-burst"
        start_mtastsd burst "$OUT/state-burst" 100000
        load --connections "$BURST_N" --key-count "$BURST_N" --once \
            --json "$OUT/burst.json" >"$OUT/burst.txt"
        say "  mtastsd: replies $(j "$OUT/burst.json" '.replies | to_entries | map("\(.key) \(.value)") | join(", ")'); errors malformed $(j "$OUT/burst.json" .malformed) connection $(j "$OUT/burst.json" .connection_errors); all answered in $(j "$OUT/burst.json" '.config.duration_s * 1000 | floor') ms; p50 $(j "$OUT/burst.json" '.latency_us.p50') µs, p99 $(j "$OUT/burst.json" '.latency_us.p99') µs"
        counters
        cleanup
        ;;
    refresh)
        say "== 3. refresh: $REFRESH_N persisted policies fetched 25 h ago"
        start_world refresh
        rm -rf "$OUT/state-refresh"
        "$BIN/gen-state" --dir "$OUT/state-refresh" --pattern "$PATTERN" \
            --key-count "$REFRESH_N" --id cold1 --mx 'mx.example.net' --fetched-ago 90000 2>/dev/null
        t0=$(date +%s.%N)
        start_mtastsd refresh "$OUT/state-refresh" 200000
        sleep 1
        cpu0=$(cpu_s "$MTASTSD_PID")
        say "  mtastsd loaded: CPU $cpu0 s, RSS $(mib "$MTASTSD_PID" VmRSS) MiB"
        hot_done=0
        first=""
        last_fetches=0
        while :; do
            sleep 1
            now=$(date +%s.%N)
            el=$(echo "$now - $t0" | bc)
            f=$(wstat fetches)
            f=${f:-0}
            if [ -z "$first" ] && [ "$f" -gt 0 ]; then
                first=$el
                cpu_first=$(cpu_s "$MTASTSD_PID")
            fi
            if [ "$hot_done" = 0 ] && [ "$f" -gt 2000 ]; then
                hot_done=1
                # Hot answers while refreshing: 1 000 cached domains, 8 connections.
                # Shares LOAD_CPU with the world, so it slows the refresh a little.
                load --connections 8 --key-count 1000 --warmup 1 --duration 5 \
                    --json "$OUT/refresh-hot.json" >"$OUT/refresh-hot.txt" || true
            fi
            last_fetches=$f
            if [ "$f" -ge "$REFRESH_N" ] || [ "$(echo "$el > $REFRESH_LIMIT" | bc)" = 1 ]; then
                break
            fi
        done
        cpu1=$(cpu_s "$MTASTSD_PID")
        say "  after $(printf %.0f "$el") s: fetches $last_fetches (first at $(printf %.1f "${first:-0}") s); mtastsd CPU from the first fetch $(echo "$cpu1 - ${cpu_first:-$cpu0}" | bc) s, from after loading $(echo "$cpu1 - $cpu0" | bc) s; RSS $(mib "$MTASTSD_PID" VmRSS) MiB, peak $(mib "$MTASTSD_PID" VmHWM) MiB"
        if [ -f "$OUT/refresh-hot.json" ]; then
            say "  hot load during the refresh (8 conns, 1 000 cached domains, 5 s): $(j "$OUT/refresh-hot.json" '.throughput_rps | floor') r/s, p50 $(j "$OUT/refresh-hot.json" '.latency_us.p50') µs, p99 $(j "$OUT/refresh-hot.json" '.latency_us.p99') µs, p99.9 $(j "$OUT/refresh-hot.json" '.latency_us."p99.9"') µs, OK $(j "$OUT/refresh-hot.json" .replies.OK)"
        fi
        counters
        cleanup
        ;;
    million)
        say "== 4. $MILLION_N distinct domains, cache.size $CACHE_SIZE, $MILLION_CONNS connections, one pass"
        start_world million
        rm -rf "$OUT/state-million"
        start_mtastsd million "$OUT/state-million" "$CACHE_SIZE"
        say "  mtastsd idle RSS $(mib "$MTASTSD_PID" VmRSS) MiB"
        (
            while kill -0 "$MTASTSD_PID" 2>/dev/null; do
                echo "$(date +%s) $(mib "$MTASTSD_PID" VmRSS)"
                sleep 5
            done
        ) >"$OUT/million-rss.txt" &
        sampler=$!
        load --connections "$MILLION_CONNS" --key-count "$MILLION_N" --once \
            --server-pid "$MTASTSD_PID" --json "$OUT/million.json" >"$OUT/million.txt"
        sleep 2
        say "  replies OK $(j "$OUT/million.json" .replies.OK) of $MILLION_N in $(j "$OUT/million.json" '.config.duration_s | floor') s ($(j "$OUT/million.json" '.throughput_rps | floor') new domains/s); p50 $(j "$OUT/million.json" '.latency_us.p50') µs, p99 $(j "$OUT/million.json" '.latency_us.p99') µs; mtastsd CPU $(j "$OUT/million.json" '.server_cpu_percent // "?"') %"
        say "  mtastsd RSS after $(mib "$MTASTSD_PID" VmRSS) MiB, peak $(mib "$MTASTSD_PID" VmHWM) MiB; RSS every 60 s: $(awk 'NR % 12 == 1 { printf "%s ", $2 }' "$OUT/million-rss.txt") (all samples in million-rss.txt)"
        kill "$sampler" 2>/dev/null || true
        counters
        cleanup
        ;;
    recheck)
        say "== 5. recheck: $RECHECK_N cached domains re-check their TXT id (cache.recheck 60 s)"
        start_world recheck
        rm -rf "$OUT/state-recheck"
        start_mtastsd recheck "" 200000 60s
        load --connections 64 --key-count "$RECHECK_N" --once \
            --json "$OUT/recheck-fill.json" >"$OUT/recheck-fill.txt"
        t_fill=$(date +%s)
        say "  filled: OK $(j "$OUT/recheck-fill.json" .replies.OK) of $RECHECK_N; RSS $(mib "$MTASTSD_PID" VmRSS) MiB"
        counters
        # 5a. CPU per re-check. Every entry's re-check is due 60 s after its fetch. A
        # pass over all of them at RECHECK_RATE (paced, so that mtastsd is not
        # saturated and its resolver threads keep up) starts one re-check per domain;
        # the same pass right after, with nothing due, is the cost of the lookups alone.
        sleep $((62 - ($(date +%s) - t_fill)))
        txt0=$(wstat txt_queries)
        fetch0=$(wstat fetches)
        cpu0=$(cpu_s "$MTASTSD_PID")
        t_pass1=$(date +%s)
        perf_pid=""
        if [ -n "${PERF:-}" ]; then # PERF=1: profile mtastsd while it re-checks
            perf record -q -e cpu-clock -F 999 -g -o "$OUT/recheck.perf" -p "$MTASTSD_PID" 2>/dev/null &
            perf_pid=$!
        fi
        load --connections 8 --key-count "$RECHECK_N" --once --rate "$RECHECK_RATE" \
            --json "$OUT/recheck-due.json" >"$OUT/recheck-due.txt"
        # The last re-checks may still be running: wait until the count stops moving.
        last=-1
        for _ in $(seq 1 30); do
            sleep 1
            now_txt=$(wstat txt_queries)
            [ $((now_txt - txt0)) -ge "$RECHECK_N" ] || [ "$now_txt" = "$last" ] && break
            last=$now_txt
        done
        cpu1=$(cpu_s "$MTASTSD_PID")
        if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
        txt1=$(wstat txt_queries)
        rechecks=$((txt1 - txt0))
        fetches=$(( $(wstat fetches) - fetch0 ))
        cpu2=$(cpu_s "$MTASTSD_PID")
        load --connections 8 --key-count "$RECHECK_N" --once --rate "$RECHECK_RATE" \
            --json "$OUT/recheck-none.json" >"$OUT/recheck-none.txt"
        sleep 1.5
        cpu3=$(cpu_s "$MTASTSD_PID")
        txt_none=$(( $(wstat txt_queries) - txt1 ))
        say "  pass at $RECHECK_RATE/s with re-checks due: $rechecks TXT queries, $fetches fetches, mtastsd CPU $(echo "$cpu1 - $cpu0" | bc) s; p50 $(j "$OUT/recheck-due.json" '.latency_us.p50') µs, p99 $(j "$OUT/recheck-due.json" '.latency_us.p99') µs"
        say "  same pass, nothing due: $txt_none TXT queries, mtastsd CPU $(echo "$cpu3 - $cpu2" | bc) s; p50 $(j "$OUT/recheck-none.json" '.latency_us.p50') µs, p99 $(j "$OUT/recheck-none.json" '.latency_us.p99') µs"
        say "  CPU of $((rechecks - txt_none)) TXT re-checks: $(echo "($cpu1 - $cpu0) - ($cpu3 - $cpu2)" | bc) s"
        # 5b. Hot answers while re-checks run: one connection asking 1 000 cached
        # domains one after another (the server is not saturated, so the latency is
        # the service time), alone, then while a pass like the first starts
        # RECHECK_RATE re-checks a second in the background.
        hot() {
            load --connections 1 --key-count 1000 --warmup 1 --duration 8 --json "$OUT/$1.json" >"$OUT/$1.txt"
        }
        hot recheck-hot-alone
        # Control: the same trigger pass with nothing due (the generator's own load).
        load --connections 8 --key-count "$RECHECK_N" --once --rate "$RECHECK_RATE" \
            --json "$OUT/recheck-control.json" >"$OUT/recheck-control.txt" &
        trigger=$!
        hot recheck-hot-control
        wait "$trigger"
        wait_s=$((62 - ($(date +%s) - t_pass1)))
        [ "$wait_s" -gt 0 ] && sleep "$wait_s"
        # First at the steady rate of production (100 000 domains in use, re-checked
        # every 60 s: about 1 700/s), then at RECHECK_RATE.
        txt2=$(wstat txt_queries)
        load --connections 8 --key-count "$RECHECK_N" --once --rate 2000 \
            --json "$OUT/recheck-trigger-slow.json" >"$OUT/recheck-trigger-slow.txt" &
        trigger=$!
        hot recheck-hot-during-slow
        txt3=$(wstat txt_queries)
        kill "$trigger" 2>/dev/null; wait "$trigger" 2>/dev/null || true
        sleep 1
        txt4=$(wstat txt_queries)
        load --connections 8 --key-count "$RECHECK_N" --once --rate "$RECHECK_RATE" \
            --json "$OUT/recheck-trigger.json" >"$OUT/recheck-trigger.txt" &
        trigger=$!
        hot recheck-hot-during
        txt5=$(wstat txt_queries)
        wait "$trigger"
        hotline() { echo "p50 $(j "$OUT/$1.json" '.latency_us.p50') µs, p99 $(j "$OUT/$1.json" '.latency_us.p99') µs, p99.9 $(j "$OUT/$1.json" '.latency_us."p99.9"') µs ($(j "$OUT/$1.json" '.throughput_rps | floor') r/s)"; }
        say "  hot answers, 1 connection, alone: $(hotline recheck-hot-alone)"
        say "  the same while a pass with nothing due runs: $(hotline recheck-hot-control)"
        say "  the same while re-checking at 2000/s ($((txt3 - txt2)) TXT queries in those 9 s): $(hotline recheck-hot-during-slow)"
        say "  the same while re-checking at $RECHECK_RATE/s ($((txt5 - txt4)) TXT queries in those 9 s): $(hotline recheck-hot-during)"
        cleanup
        # The baseline server on the same core, same load: the p99 to compare with.
        taskset -c "$SERVER_CPU" "$BIN/socketmap-baseline" --listen "127.0.0.1:$MTASTSD_PORT" \
            --pattern "$PATTERN" --key-count 1000 --answer "secure match=mx.d0.cold.test servername=hostname" \
            2>/dev/null &
        MTASTSD_PID=$!
        wait_port "$MTASTSD_PORT"
        hot recheck-hot-baseline
        say "  baseline server, same load: $(hotline recheck-hot-baseline)"
        cleanup
        ;;
    *)
        echo "unknown phase $phase" >&2
        exit 2
        ;;
    esac
done
say "uptime at the end: $(uptime)"
