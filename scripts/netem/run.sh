#!/usr/bin/env bash
# Bad networks: a station and three laptops, each in its own network namespace, sync over
# impaired links until they all hold the same records, and we report how long it took and
# how many bytes it cost. Nothing may be lost.
#
#   sudo scripts/netem/run.sh                 # every configuration
#   sudo scripts/netem/run.sh loss20 partition
#   scripts/netem/run.sh --probe              # can it run here? (exit 0, else the reason, exit 3)
#
# Topology (all inside namespaces named yz<PID>-*, so parallel runs do not clash):
#
#   yz<PID>-station  eth0 10.77.0.1/24 ──veth── st 10.77.0.254 ┐
#   yz<PID>-lap1     eth0 10.77.1.2/24 ──veth── l1 10.77.1.1   ├ yz<PID>-hub (router)
#   yz<PID>-lap2     eth0 10.77.2.2/24 ──veth── l2 10.77.2.1   │   + TUN t1..t3 with
#   yz<PID>-lap3     eth0 10.77.3.2/24 ──veth── l3 10.77.3.1   ┘     wire.py on each
#
# The hub routes every packet between laptop i and the station (both ways) through TUN
# device t<i>, where scripts/netem/wire.py impairs it as netem would (loss, delay,
# duplication, reordering, a cut link) and hands it back to be forwarded. A userspace link
# rather than `tc qdisc netem`: many kernels ship without sch_netem (the one this suite
# was written on among them); TUN is nearly everywhere, and the figures then mean the same
# on every machine.
#
# Configurations (impairment on each laptop's link, each way): clean; loss5, loss20 (5 %,
# 20 % of packets lost); delay500 (500 ms each way, so a 1 s round trip); dup-reorder (5 %
# duplicated, 25 % sent at once while the rest wait 50 ms); partition, partition-short (lap1
# holds 6000 visits; once it has put 2 MiB of its sync on the link, the link is cut both
# ways for 35 s, longer than QUIC's 30 s idle timeout, so the sync fails and must be
# redone; or for 5 s, which QUIC rides out). In each, every laptop syncs with the station,
# retrying failed syncs, round after round, until all four nodes hold exactly the same
# visits and tickets: every record any of them wrote. Exit 1 if a configuration loses a
# record, does not converge within its time limit, or fails verify.
#
# Environment: YIZHAN_BIN (else cargo build --release, honouring CARGO_TARGET_DIR),
# NETEM_VISITS (visits per node, 300), NETEM_TICKETS (tickets per node, 20),
# NETEM_BIG_VISITS (lap1's visits in the partition runs, 6000), NETEM_CUT_BYTES (2 MiB),
# NETEM_PARTITION_HOLD (35), NETEM_SHORT_HOLD (5), NETEM_TIMEOUT (seconds per
# configuration, 300), NETEM_SEED, NETEM_REPORT (target/netem-report.md), NETEM_KEEP=1
# keeps the homes and logs (they are kept anyway when something fails).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL_CONFIGS="clean loss5 loss20 delay500 dup-reorder partition partition-short"
VISITS=${NETEM_VISITS:-300}
TICKETS=${NETEM_TICKETS:-20}
BIG=${NETEM_BIG_VISITS:-6000}
TIMEOUT=${NETEM_TIMEOUT:-300}
HOLD=${NETEM_PARTITION_HOLD:-35}
SHORT_HOLD=${NETEM_SHORT_HOLD:-5}
CUT_BYTES=${NETEM_CUT_BYTES:-2097152}
SEED=${NETEM_SEED:-7365}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REPORT=${NETEM_REPORT:-$TARGET/netem-report.md}
GRID=和平里
PORT=7365
STATION_ADDR=10.77.0.1:$PORT
LAPS="1 2 3"

# --- can it run here? ------------------------------------------------------------------

probe() { # prints why not and returns 1, or returns 0
  if [ "$(id -u)" != 0 ]; then echo "needs root (network namespaces)"; return 1; fi
  local tool
  for tool in ip python3 timeout; do
    command -v "$tool" >/dev/null || { echo "needs $tool"; return 1; }
  done
  local ns=yzprobe$$ err
  if ! err=$(ip netns add "$ns" 2>&1); then echo "ip netns add fails: $err"; return 1; fi
  if ! err=$(ip -n "$ns" link add p0 type veth peer name p1 2>&1); then
    ip netns del "$ns"; echo "no veth: $err"; return 1
  fi
  if ! err=$(ip -n "$ns" tuntap add dev t0 mode tun 2>&1); then
    ip netns del "$ns"; echo "no TUN device (/dev/net/tun): $err"; return 1
  fi
  ip netns del "$ns"
}

CONFIGS=
for arg in "$@"; do
  case $arg in
    --probe) if reason=$(probe); then exit 0; else echo "$reason"; exit 3; fi ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    clean|loss5|loss20|delay500|dup-reorder|partition|partition-short) CONFIGS="$CONFIGS $arg" ;;
    *) echo "unknown configuration '$arg' (known: $ALL_CONFIGS)" >&2; exit 2 ;;
  esac
done
CONFIGS=${CONFIGS:-$ALL_CONFIGS}
if ! reason=$(probe); then echo "netem: cannot run here: $reason" >&2; exit 3; fi

link_of() { # a configuration: wire.py flags for every link | extra flags for lap1's | words
  local cut="--cut-after-bytes $CUT_BYTES --cut-for"
  case $1 in
    clean) echo "||none" ;;
    loss5) echo "--loss 0.05||5% loss" ;;
    loss20) echo "--loss 0.20||20% loss" ;;
    delay500) echo "--delay-ms 500||500 ms delay" ;;
    dup-reorder) echo "--dup 0.05 --reorder 0.25 --gap-ms 50||5% dup, 25% reordered by 50 ms" ;;
    partition) echo "|$cut $HOLD|lap1 cut ${HOLD} s mid-sync" ;;
    partition-short) echo "|$cut $SHORT_HOLD|lap1 cut ${SHORT_HOLD} s mid-sync" ;;
  esac
}

# --- the binary ------------------------------------------------------------------------

if [ -n "${YIZHAN_BIN:-}" ]; then
  BIN=$YIZHAN_BIN
else
  (cd "$ROOT" && cargo build --release --locked -q -p yizhan-cli)
  BIN=$TARGET/release/yizhan
fi
[ -x "$BIN" ] || { echo "netem: no yizhan binary at $BIN" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# --- clean-up, whatever happens -----------------------------------------------------------

P=yz$$
NS_HUB=$P-hub
NS_ST=$P-station
ns_lap() { echo "$P-lap$1"; }
ALL_NS="$NS_HUB $NS_ST $(for i in $LAPS; do ns_lap "$i"; done)"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/yz-netem.XXXXXX")
FAILED=0
CURRENT= # the configuration being set up and run

cleanup() {
  local rc=$? pid ns
  set +e
  # Our background jobs not yet waited for (a waited-for pid may belong to someone else by
  # now, so only these), then whatever still runs inside our own namespaces.
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  for ns in $ALL_NS; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do # up to a second to stop
    [ -z "$(for ns in $ALL_NS; do ip netns pids "$ns" 2>/dev/null; done)" ] && break
    sleep 0.1
  done
  for ns in $ALL_NS; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ "$rc" = 130 ]; then
    echo "netem: interrupted${CURRENT:+ during $CURRENT}" >&2
  elif [ "$rc" != 0 ] && [ -n "$CURRENT" ]; then
    echo "netem: the $CURRENT run itself failed" >&2
  fi
  if [ "${NETEM_KEEP:-0}" = 1 ] || [ "$rc" != 0 ] || [ "$FAILED" != 0 ]; then
    echo "netem: homes and logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------------------

now_us() { echo "${EPOCHREALTIME/./}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'; }
PY=$(python3 -c 'import sys; print(sys.executable)') # not a version manager's shim: fast
h() { "$PY" "$HERE/helper.py" "$@"; }
log() { printf '[netem %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
yz() { local home=$1; shift; "$BIN" --home "$home" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
hub_sys() { in_ns "$NS_HUB" sh -c "echo $2 > /proc/sys/net/ipv4/$1"; }

# --- topology (once) --------------------------------------------------------------------

setup_topology() {
  local ns i
  for ns in $ALL_NS; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  hub_sys ip_forward 1
  hub_sys conf/all/rp_filter 0
  hub_sys conf/default/rp_filter 0
  hub_sys conf/all/send_redirects 0
  hub_sys conf/default/send_redirects 0

  ip -n "$NS_HUB" link add st type veth peer name eth0 netns "$NS_ST"
  ip -n "$NS_HUB" addr add 10.77.0.254/24 dev st
  ip -n "$NS_HUB" link set st up
  ip -n "$NS_ST" addr add 10.77.0.1/24 dev eth0
  ip -n "$NS_ST" link set eth0 up
  ip -n "$NS_ST" route add 10.77.0.0/16 via 10.77.0.254

  for i in $LAPS; do
    ns=$(ns_lap "$i")
    ip -n "$NS_HUB" link add "l$i" type veth peer name eth0 netns "$ns"
    ip -n "$NS_HUB" addr add "10.77.$i.1/24" dev "l$i"
    ip -n "$NS_HUB" link set "l$i" up
    ip -n "$ns" addr add "10.77.$i.2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "10.77.$i.1"
    # Everything from the laptop, and everything from the station to the laptop, goes
    # through t<i> (and so through wire.py); what wire.py writes back is routed normally.
    ip -n "$NS_HUB" tuntap add dev "t$i" mode tun
    ip -n "$NS_HUB" link set "t$i" up
    hub_sys "conf/t$i/rp_filter" 0
    hub_sys "conf/l$i/rp_filter" 0
    ip -n "$NS_HUB" route add default dev "t$i" table $((100 + i))
    ip -n "$NS_HUB" rule add iif "l$i" lookup $((100 + i)) pref $((1000 + i))
    ip -n "$NS_HUB" rule add iif st to "10.77.$i.0/24" lookup $((100 + i)) pref $((1100 + i))
  done
  hub_sys conf/st/rp_filter 0
}

# Background processes are started with `ip netns exec` itself (not through a function,
# which would put a subshell between $! and the process), so signals reach them.
declare -A WIRE
start_wires() { # DIR FLAGS LAP1_FLAGS
  local d=$1 flags=$2 lap1=$3 i n extra
  for i in $LAPS; do
    extra=
    [ "$i" = 1 ] && extra=$lap1
    # shellcheck disable=SC2086 # the flags are words on purpose
    ip netns exec "$NS_HUB" "$PY" "$HERE/wire.py" --dev "t$i" --down-net "10.77.$i.0/24" \
      --seed $((SEED * 10 + i)) --stats "$d/wire$i.json" $flags $extra 2>"$d/wire$i.log" &
    WIRE[$i]=$!
  done
  for i in $LAPS; do
    for n in $(seq 100); do
      ip -n "$NS_HUB" -o link show "t$i" | grep -q LOWER_UP && break
      [ "$n" = 100 ] && { log "wire $i did not attach to t$i"; cat "$d/wire$i.log" >&2; return 1; }
      sleep 0.05
    done
  done
}

stop_wires() {
  local i
  for i in $LAPS; do kill -TERM "${WIRE[$i]}" 2>/dev/null || true; done
  for i in $LAPS; do wait "${WIRE[$i]}" 2>/dev/null || true; done
}

# One laptop syncs until a sync succeeds or the deadline passes. Each attempt is a line of
# LAP.attempts: ok|fail, seconds, the sync's JSON or the first line of its error.
sync_until_ok() { # DIR LAP DEADLINE_US
  local d=$1 i=$2 deadline=$3 t0 t1 rc left
  while :; do
    left=$(( (deadline - $(now_us)) / 1000000 ))
    [ "$left" -gt 0 ] || return 1
    t0=$(now_us)
    rc=0
    timeout -k 5 "$(( left < 150 ? left : 150 ))" ip netns exec "$(ns_lap "$i")" \
      "$BIN" --home "$d/lap$i" --json sync >"$d/lap$i.out" 2>"$d/lap$i.err" || rc=$?
    t1=$(now_us)
    if [ "$rc" = 0 ]; then
      printf 'ok\t%s\t%s\n' "$(secs "$t0" "$t1")" "$(tr -d '\n' <"$d/lap$i.out")" >>"$d/lap$i.attempts"
      return 0
    fi
    local why
    why=$(grep -v '^\s*$' "$d/lap$i.err" | tail -1 | sed 's/^[Ee]rror: //' | tr '\t' ' ' || true)
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && why="no answer within the attempt's time limit"
    printf 'fail\t%s\t%s\n' "$(secs "$t0" "$t1")" "${why:-exit $rc}" >>"$d/lap$i.attempts"
    sleep 1
  done
}

snapshot() { # DIR: every node's ids, into DIR/have
  local d=$1 node
  mkdir -p "$d/have"
  for node in station lap1 lap2 lap3; do
    yz "$d/$node" --json visit list | h ids >"$d/have/$node.visits"
    yz "$d/$node" --json ticket list | h ids >"$d/have/$node.tickets"
  done
}

# --- one configuration ------------------------------------------------------------------

run_config() { # NAME
  local cfg=$1 d=$WORK/$1 spec flags lap1_flags words i id token serve_pid
  spec=$(link_of "$cfg")
  IFS='|' read -r flags lap1_flags words <<<"$spec"
  mkdir -p "$d"
  log "== $cfg ($words)"

  # The station: its site, a few records of its own, then it serves.
  yz "$d/station" --json init --name 幸福驿站 --station >/dev/null
  h visits 20 "$GRID" 驿站 >"$d/station.csv"
  h tickets 5 "$GRID" 驿站 >"$d/station-tickets.csv"
  yz "$d/station" --json import --kind visits --format csv "$d/station.csv" >/dev/null
  yz "$d/station" --json import --kind tickets --format csv "$d/station-tickets.csv" >/dev/null
  yz "$d/station" --json visit add --household "和平里 1-1-101" --grid "$GRID" \
    --category 政策咨询 --resident 张秀英 --note "站内登记" | h field id >>"$d/printed.visits"
  yz "$d/station" --json ticket open --title "社区活动室漏水" --grid "$GRID" \
    --category 城市管理 --priority high | h field id >>"$d/printed.tickets"
  ip netns exec "$NS_ST" "$BIN" --home "$d/station" serve --listen "$STATION_ADDR" >"$d/serve.log" 2>&1 &
  serve_pid=$!

  # Three laptops, enrolled for the same grid, each with a few hundred visits.
  for i in $LAPS; do
    yz "$d/lap$i" --json init --name "网格员$i" >/dev/null
    id=$(yz "$d/lap$i" --json id | h field device_id)
    token=$(yz "$d/station" --json enroll "$id" --name "网格员$i" --grid "$GRID" | h field token)
    yz "$d/lap$i" --json join "$token" --station "$STATION_ADDR" >/dev/null
    local n=$VISITS
    [[ $cfg == partition* ]] && [ "$i" = 1 ] && n=$BIG
    h visits "$n" "$GRID" "网格员$i" >"$d/lap$i.csv"
    h tickets "$TICKETS" "$GRID" "网格员$i" >"$d/lap$i-tickets.csv"
    yz "$d/lap$i" --json import --kind visits --format csv "$d/lap$i.csv" >/dev/null
    yz "$d/lap$i" --json import --kind tickets --format csv "$d/lap$i-tickets.csv" >/dev/null
    for n in 1 2 3; do
      yz "$d/lap$i" --json visit add --household "和平里 $i-$n-30$n" --category 扶贫解困 \
        --resident 王建国 --needs "冬季取暖补贴" --note "网格员$i 手工登记 $n" \
        | h field id >>"$d/printed.visits"
    done
    for n in 1 2; do
      yz "$d/lap$i" --json ticket open --title "网格员$i 报修 $n" --category 城市管理 \
        | h field id >>"$d/printed.tickets"
    done
  done

  for n in $(seq 100); do
    grep -q '^listening on' "$d/serve.log" 2>/dev/null && break
    [ "$n" = 100 ] && { log "the station did not start serving"; cat "$d/serve.log" >&2; return 1; }
    sleep 0.1
  done

  # What must arrive everywhere: every node's own records before any sync (and so every id
  # that visit add / ticket open printed, which we check too).
  snapshot "$d"
  cat "$d"/have/*.visits | sort -u >"$d/expected.visits"
  cat "$d"/have/*.tickets | sort -u >"$d/expected.tickets"
  local kind
  for kind in visits tickets; do
    if [ -n "$(sort -u "$d/printed.$kind" | comm -23 - "$d/expected.$kind")" ]; then
      log "an id printed by add/open is not in its node's own list"; return 1
    fi
  done
  log "$(wc -l <"$d/expected.visits") visits, $(wc -l <"$d/expected.tickets") tickets to converge"

  start_wires "$d" "$flags" "$lap1_flags"
  local start deadline round=0 converged_s=null pids verdict
  start=$(now_us)
  deadline=$((start + TIMEOUT * 1000000))
  while :; do
    round=$((round + 1))
    pids=()
    for i in $LAPS; do
      sync_until_ok "$d" "$i" "$deadline" &
      pids+=("$!")
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    local end
    end=$(now_us)
    snapshot "$d"
    verdict=$(h check "$d")
    echo "$verdict" >"$d/verdict.json"
    if [[ $verdict == *'"converged": true'* ]]; then
      converged_s=$(secs "$start" "$end")
      log "converged in $converged_s s after $round round(s)"
      break
    fi
    if [ "$(now_us)" -ge "$deadline" ]; then
      log "NOT converged within $TIMEOUT s: $verdict"
      break
    fi
  done

  stop_wires
  local bad=0 node v
  for node in station lap1 lap2 lap3; do
    v=$(yz "$d/$node" --json verify 2>"$d/verify-$node.err" | h field bad) || v=${v:-1}
    bad=$((bad + ${v:-1}))
  done
  kill -TERM "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  printf '{"config": "%s", "link": "%s", "converged_s": %s, "rounds": %s, "timeout_s": %s, "verify_bad": %s}\n' \
    "$cfg" "$words" "$converged_s" "$round" "$TIMEOUT" "$bad" >"$d/meta.json"
}

# --- the suite --------------------------------------------------------------------------

log "yizhan: $BIN"
log "work: $WORK"
setup_topology
SUITE_START=$(now_us)
ROWS=()
NOTES=()
for cfg in $CONFIGS; do
  # Not inside `if`: set -e must hold in there, so that a step that fails (an import, say)
  # stops the suite rather than shrinking what is expected to arrive.
  CURRENT=$cfg
  run_config "$cfg"
  CURRENT=
  row=$(h row "$WORK/$cfg")
  ROWS+=("$("$PY" -c 'import json,sys; print("| " + " | ".join(json.loads(sys.argv[1])["cells"]) + " |")' "$row")")
  [[ $row == *'"ok": true'* ]] || FAILED=1
  errs=$("$PY" -c 'import json,sys; e=json.loads(sys.argv[1])["errors"]; print("; ".join(f"{n}× {k}" for k, n in e.items()))' "$row")
  [ -n "$errs" ] && NOTES+=("- $cfg, failed attempts: $errs")
  cut=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["partition"])' "$row")
  [ -n "$cut" ] && NOTES+=("- $cfg: $cut")
done

{
  echo "# Bad networks: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)."
  echo "A station and 3 laptops (one grid), each laptop $VISITS visits + $TICKETS tickets imported"
  echo "+ 3 visits + 2 tickets added, the station 21 visits + 6 tickets; partitions: lap1 has"
  echo "$BIG visits. Impairment on each laptop's link, each way, by scripts/netem/wire.py."
  echo "Suite wall time: $(secs "$SUITE_START" "$(now_us)") s."
  echo
  echo "| config | link (each way) | records | converged (s) | rounds | syncs (failed) | slowest sync (s) | sent | received | on the wire | dropped / duplicated pkts | lost | verify |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for r in "${ROWS[@]}"; do echo "$r"; done
  echo
  echo "converged: from the first sync to the end of the round after which every node held"
  echo "every record. slowest sync: the longest successful \`yizhan sync\`."
  echo "sent / received: bytes_sent / bytes_received of the laptops' successful syncs (sync --json)."
  echo "on the wire: every IP packet the laptops and the station put on the laptops' links,"
  echo "failed syncs, retransmissions and dropped packets included."
  if [ "${#NOTES[@]}" -gt 0 ]; then echo; printf '%s\n' "${NOTES[@]}"; fi
} | tee "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
log "report: $REPORT"
if [ "$FAILED" != 0 ]; then
  log "FAILED: a configuration lost records, did not converge in time, or failed verify"
  exit 1
fi
