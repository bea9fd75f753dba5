#!/usr/bin/env bash
# benches/soak.sh: a long mixed load against mtastsd (docs/RELIABILITY.md; manual, not in CI).
#
# A loopback MTA-STS world (bench-world: DNS + HTTPS for dN.soak.test) with
#  - every BROKEN_EVERY-th domain's policy server answering HTTP 500 (a failing
#    domain: TXT record, no policy),
#  - every domain's TXT id changing every ID_EVERY seconds (a policy update to
#    notice and fetch),
# and an open-loop load of RATE requests/s over 16 connections, keys at random from:
#  - HOT_N hot domains, each listed 50 times (most requests),
#  - COLD_N other domains (more than cache.size = CACHE_SIZE: evictions),
#  - NOPOL_N domains outside the world (no _mta-sts record: negative answers).
# mtastsd re-checks ids every 60 s, saves its cache every 60 s. Every 10 s the
# script records mtastsd's RSS, open file descriptors, threads and CPU time
# (soak-samples.txt); at the end it prints the figures for docs/RELIABILITY.md.
#
# Settings (environment): DURATION (1800 s), RATE (400), HOT_N (1000),
# COLD_N (150000), NOPOL_N (20000), CACHE_SIZE (100000), BROKEN_EVERY (10),
# ID_EVERY (300), OUT (target/bench-soak), PORT_BASE (18660).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-1800}
RATE=${RATE:-400}
HOT_N=${HOT_N:-1000}
COLD_N=${COLD_N:-150000}
NOPOL_N=${NOPOL_N:-20000}
CACHE_SIZE=${CACHE_SIZE:-100000}
BROKEN_EVERY=${BROKEN_EVERY:-10}
ID_EVERY=${ID_EVERY:-300}
OUT=${OUT:-target/bench-soak}
PORT_BASE=${PORT_BASE:-18660}
PORT=$((PORT_BASE + 1))
DNS_PORT=$((PORT_BASE + 3))
HTTPS_PORT=$((PORT_BASE + 4))
TCK=$(getconf CLK_TCK)

cargo build --release -p mtastsd -p socketmap-load >&2
BIN=target/release
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/state" "$OUT"/*.txt "$OUT"/*.json

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    echo "nothing listening on port $1" >&2
    return 1
}

"$BIN/bench-world" serve --dns "127.0.0.1:$DNS_PORT" --https "127.0.0.1:$HTTPS_PORT" \
    --ca-file "$OUT/ca.pem" --stats "$OUT/world.stats" --suffix soak.test --id soak \
    --id-every "$ID_EVERY" --broken-every "$BROKEN_EVERY" --max-domains $((HOT_N + COLD_N)) \
    2>"$OUT/world.log" &
PIDS+=($!)
wait_port "$HTTPS_PORT"

cat >"$OUT/mtastsd.toml" <<EOF
[server]
listen = ["127.0.0.1:$PORT"]
[dns]
nameservers = ["127.0.0.1:$DNS_PORT"]
timeout = "2s"
[fetch]
timeout = "5s"
ca_file = "$OUT/ca.pem"
https_port = $HTTPS_PORT
[cache]
state_dir = "$OUT/state"
size = $CACHE_SIZE
recheck = "60s"
save_interval = "60s"
[log]
level = "warn"
EOF
"$BIN/mtastsd" serve --config "$OUT/mtastsd.toml" 2>"$OUT/mtastsd.log" &
MTASTSD=$!
PIDS+=("$MTASTSD")
wait_port "$PORT"

# The keys: hot ones 50 times each, then cold and no-policy domains once each.
{
    for _ in $(seq 50); do seq 0 $((HOT_N - 1)) | sed 's/.*/d&.soak.test/'; done
    seq "$HOT_N" $((HOT_N + COLD_N - 1)) | sed 's/.*/d&.soak.test/'
    seq 0 $((NOPOL_N - 1)) | sed 's/.*/n&.nopolicy.test/'
} >"$OUT/keys.txt"

(
    while kill -0 "$MTASTSD" 2>/dev/null; do
        rss=$(awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$MTASTSD/status")
        threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$MTASTSD/status")
        fds=$(find "/proc/$MTASTSD/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        cpu=$(awk -v t="$TCK" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$MTASTSD/stat")
        echo "$(date +%s) $rss $fds $threads $cpu"
        sleep 10
    done
) >"$OUT/soak-samples.txt" &
PIDS+=($!)

start=$(date +%s)
"$BIN/socketmap-load" --target "127.0.0.1:$PORT" --keys-file "$OUT/keys.txt" --order random \
    --connections 16 --rate "$RATE" --warmup 0 --duration "$DURATION" \
    --json "$OUT/soak.json" >"$OUT/soak.txt"
sleep 2

# The figures. Samples: time RSS-MiB fds threads CPU-s.
awk -v s="$start" -v d="$DURATION" '
    { t = $1 - s }
    t >= 300 && min_rss == "" { min_rss = $2; max_rss = $2; min_fd = $3; max_fd = $3 }
    t >= 300 { if ($2 < min_rss) min_rss = $2; if ($2 > max_rss) max_rss = $2;
               if ($3 < min_fd) min_fd = $3; if ($3 > max_fd) max_fd = $3 }
    t < 300 || NR == 1 { first = $0 }
    { last = $0; n++ }
    END {
        printf "samples %d; after the first 5 min: RSS %s-%s MiB, fds %s-%s\n", n, min_rss, max_rss, min_fd, max_fd
        printf "last sample (time RSS fds threads CPU): %s\n", last
    }' "$OUT/soak-samples.txt" | tee "$OUT/summary.txt"
awk -v s="$start" '{ t = $1 - s; if (t % 300 < 10) printf "  %4d s: RSS %s MiB, fds %s, threads %s, CPU %s s\n", t, $2, $3, $4, $5 }' \
    "$OUT/soak-samples.txt" | tee -a "$OUT/summary.txt"
jq -r '"requests: \(.replies | to_entries | map("\(.key) \(.value)") | join(", ")); malformed \(.malformed); connection errors \(.connection_errors); p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us, p99.9 \(.latency_us."p99.9") us, max \(.latency_us.max) us"' \
    "$OUT/soak.json" | tee -a "$OUT/summary.txt"
grep -c . "$OUT/mtastsd.log" | sed 's/^/mtastsd log lines: /' | tee -a "$OUT/summary.txt"
cat "$OUT/world.stats" | tee -a "$OUT/summary.txt"
