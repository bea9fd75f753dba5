# benches/common.sh: helpers shared by the load scripts (sourced, not run).
# The caller sets BIN (the release binaries) and appends the PIDs of what it starts
# to PIDS; everything in PIDS is stopped at exit, and TMP (if set) removed.

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [[ -n ${TMP:-} ]] && rm -rf "$TMP"
    return 0
}
trap cleanup EXIT

# A value from a pretty-printed socketmap-load JSON report: jget FILE KEY.
jget() {
    sed -n "s/^ *\"$2\": \([0-9.e+-]*\),\{0,1\}$/\1/p" "$1" | head -n 1
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Send one socketmap request; succeed when the reply starts like an OK reply.
probe_ok() {
    local port=$1 key=$2 fd reply=""
    local req="postfix $key"
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf '%s' "${#req}:$req," >&"$fd"
    IFS= read -r -t 2 -N 5 reply <&"$fd" || true
    exec {fd}>&-
    [[ $reply == *:OK ]]
}

# Wait until PORT answers d0.bench.test with OK (at most 30 s).
wait_ok() {
    local port=$1 i
    for i in $(seq 1 3000); do
        probe_ok "$port" d0.bench.test && return 0
        sleep 0.01
    done
    echo "no OK answer on port $port after 30 s" >&2
    return 1
}

# write_config FILE PORT DNS: an mtastsd configuration listening on 127.0.0.1:PORT,
# asking the DNS server at DNS (HOST:PORT), logging at warn so that logging costs
# nothing on the hot path.
write_config() {
    local file=$1 port=$2 dns=$3
    cat >"$file" <<EOF
[server]
listen = ["127.0.0.1:$port"]
[dns]
nameservers = ["$dns"]
timeout = "1s"
[fetch]
timeout = "1s"
[log]
level = "warn"
EOF
}
