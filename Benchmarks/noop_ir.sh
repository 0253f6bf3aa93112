#!/bin/bash
# Instructions per NOOP (issue 17): user-space instructions (callgrind Ir, every thread) of a
# whole pop3d run that serves one warm-up session and then `pop3bench noop` with 4 sessions
# of N NOOPs, for two values of N; per NOOP = (Ir(N2) - Ir(N1)) / (4 * (N2 - N1)), so start-up,
# logins and shutdown cancel out. Repeats agree within a few percent (how many NOOPs one loop turn
# serves depends on timing).
#
#   python3 Benchmarks/mkdata.py /tmp/noopdata --users 4 --messages 10 --huge 0 --huge2 0 --big-mib 1 --idle 0
#   chown -R pop3bench /tmp/noopdata
#   sudo Benchmarks/noop_ir.sh .build/release/pop3d .build/release/pop3bench /tmp/noopdata
#
# pop3d runs as the pop3bench user (the data's owner); the copy without DWARF is what valgrind
# 3.19 can read (as Benchmarks/session_profile.py does).
set -eu
POP3D=$1; BENCH=$2; DATA=$3; N1=${4:-200}; N2=${5:-2200}
run() {
    local n=$1 port=$((20000 + RANDOM % 20000)) dir
    dir=$(mktemp -d /tmp/noop-ir.XXXXXX); chown pop3bench "$dir"
    objcopy --strip-debug "$POP3D" "$dir/pop3d"; chown pop3bench "$dir/pop3d"
    setpriv --reuid=pop3bench --regid=pop3bench --init-groups env POP3D_MAX_CONNECTIONS_PER_IP=60000 \
      valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$dir/pop3d" serve --listen "127.0.0.1:$port" \
      --passwd-file "$DATA/passwd" --mail "maildir:$DATA/mail/%u/Maildir" --log-level warning > "$dir/serve.log" 2>&1 &
    for _ in $(seq 1 120); do
        sleep 0.5
        "$BENCH" session --port "$port" --users u%04d --password p%04d --user-count 4 --concurrency 4 --count 4 --quiet --json >/dev/null 2>&1 && break
    done
    "$BENCH" noop --port "$port" --users u%04d --password p%04d --user-count 4 --concurrency 4 --count 4 --commands "$n" --quiet --json > "$dir/bench.json"
    local pid; pid=$(pgrep -u pop3bench -f "$dir/pop3d serve" | head -1)
    kill -INT "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    grep "I   refs" "$dir/serve.log" | awk '{gsub(",", "", $NF); print $NF}'
}
a=$(run "$N1"); b=$(run "$N2")
echo "Ir: $a (N=$N1), $b (N=$N2); per NOOP: $(( (b - a) / (4 * (N2 - N1)) ))"
