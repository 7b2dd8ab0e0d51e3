#!/usr/bin/env bash
# Where the CPU goes under load: perf over every process of a running stack (kchat's daemons,
# the Kafka broker with its JIT-compiled Java methods named, Postgres, Redis) while the load
# generator sends 1:1 messages at a fixed rate.
#
#   bench/profile.sh [RATE [SECONDS]]        defaults: 2000 msg/s, 15 s of profile
#
# Runs against the stack of KCHAT_STATE_DIR / KCHAT_PORT_BASE (start it with scripts/stack.sh
# up, as bench/run.sh does). Writes $KCHAT_STATE_DIR/profile/{perf.data,by-process.txt,
# by-symbol.txt,loadgen.json} and prints the two tables' heads. Needs perf (linux-perf) and
# a JDK's jcmd, and the permission to profile other processes (root, or
# kernel.perf_event_paranoid <= 1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${1:-2000}
SECS=${2:-15}
# shellcheck source=../scripts/env.sh
. "$ROOT/scripts/env.sh"
BUILD=${KCHAT_BUILD_DIR:-$ROOT/build}
OUT=$KCHAT_STATE_DIR/profile
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 2; }

pids=()
for f in "$KCHAT_STATE_DIR"/run/*.pid "$KCHAT_STATE_DIR"/kafka/kafka.pid; do
    [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && pids+=("$(cat "$f")")
done
for name in postgres redis-server; do
    while read -r p; do pids+=("$p"); done < <(pgrep -x "$name" || true)
done
((${#pids[@]})) || { echo "profile: no stack running in $KCHAT_STATE_DIR" >&2; exit 2; }
kafka_pid=$(cat "$KCHAT_STATE_DIR/kafka/kafka.pid" 2>/dev/null || true)

gws=()
for ((i = 0; i < ${KCHAT_GATEWAYS:-3}; i++)); do gws+=("127.0.0.1:$((KCHAT_GATEWAY_PORT + i))"); done
"$BUILD/bench/loadgen/kchat-loadgen" --gateways="$(IFS=,; echo "${gws[*]}")" \
    --brokers="$KCHAT_KAFKA_BROKERS" --jwt-key="$KCHAT_JWT_PRIVATE_KEY" \
    --schemas-dir="$ROOT/schemas" --redis="127.0.0.1:$KCHAT_REDIS_PORT" \
    --conns=400 --group=2 --rate="$RATE" --duration-s=$((SECS + 8)) --size=100 \
    --label=profile --out="$OUT/loadgen.json" >/dev/null 2>"$OUT/loadgen.log" &
lg=$!
trap 'kill $lg 2>/dev/null || true' EXIT
sleep 5 # connected, routes registered, sending
perf record -q -F 499 -g -p "$(IFS=,; echo "${pids[*]}")" -o "$OUT/perf.data" -- sleep "$SECS" \
    2>"$OUT/perf-record.log"
# The broker's JIT-compiled methods get names from the map the JVM writes on request.
[[ -n $kafka_pid ]] && command -v jcmd >/dev/null &&
    jcmd "$kafka_pid" Compiler.perfmap >/dev/null 2>&1 || true
wait $lg || echo "profile: the load generator's check failed (see $OUT/loadgen.json)" >&2
trap - EXIT

# Samples by thread (perf's "pid" key), summed by process (a thread maps to its process
# while it runs).
perf report -i "$OUT/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null |
    python3 -c '
import re, sys
from collections import defaultdict
tot = defaultdict(float)
threads = defaultdict(list)
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\d+):(.*)", line)
    if not m:
        continue
    pct, tid, name = float(m.group(1)), m.group(2), m.group(3).strip()
    try:
        tgid = next(l.split()[1] for l in open(f"/proc/{tid}/status") if l.startswith("Tgid:"))
        proc = open(f"/proc/{tgid}/comm").read().strip() + f" ({tgid})"
    except OSError:
        proc = f"gone ({tid})"
    tot[proc] += pct
    threads[proc].append((pct, name))
for proc, pct in sorted(tot.items(), key=lambda x: -x[1]):
    top = ", ".join(f"{n} {p:.1f}" for p, n in sorted(threads[proc], reverse=True)[:4])
    print(f"{pct:6.2f}%  {proc:28s} threads: {top}")
' > "$OUT/by-process.txt" || true
perf report -i "$OUT/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' > "$OUT/by-symbol.txt" || true
echo "== CPU samples by process ($OUT/by-process.txt)"
head -15 "$OUT/by-process.txt"
echo "== hottest symbols ($OUT/by-symbol.txt)"
head -40 "$OUT/by-symbol.txt"
python3 - "$OUT/loadgen.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
r = s["results"]
print(f"== load: {r['acked_per_s']:.0f} acked/s, ack p50 {r['ack_latency']['p50_ms']} ms, "
      f"p99 {r['ack_latency']['p99_ms']} ms, check {'pass' if s['check']['pass'] else 'FAIL'}")
EOF
