#!/usr/bin/env bash
# Builds yizhan and runs a short demo of its main job, all on this machine (loopback):
# a station and two volunteers. The volunteers enrol, log visits offline, sync with the
# station, and see what is safe there; one ticket is edited on both laptops at once.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p yizhan-cli
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/yizhan
WORK=$(mktemp -d)
SERVE_PID=
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { # run HOME ARGS...: show and run one command
  local home=$1; shift
  printf '\033[2m[%s]$ yizhan %s\033[0m\n' "$home" "$*" >&2
  "$BIN" --home "$WORK/$home" "$@"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

say "The station (幸福驿站) creates the site and starts serving"
run station init --name 幸福驿站 --station
"$BIN" --home "$WORK/station" serve --listen 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do grep -q '^listening on' "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
STATION=$(sed -n 's/^listening on //p' "$WORK/serve.log" | head -1)
echo "station listening on $STATION"

say "Two volunteers set up their laptops and are enrolled for grid 和平里"
run wangfang init --name 王芳
run liqiang init --name 李强
for pair in wangfang:王芳 liqiang:李强; do
  v=${pair%%:*}
  ID=$("$BIN" --home "$WORK/$v" --json id | field device_id)
  run station enroll "$ID" --name "${pair#*:}" --grid 和平里 >"$WORK/token"
  run "$v" join "$(cat "$WORK/token")" --station "$STATION"
done

say "Out on the street, offline: 王芳 adds 张秀英's home to the ledger, each logs a visit; 王芳 opens a ticket"
run wangfang household add --address "和平里 3-2-101" --resident 张秀英 --tag 独居老人
run wangfang visit add --household "和平里 3-2-101" --category 扶贫解困 \
  --resident 张秀英 --needs "冬季取暖补贴" --note "老人独居，行动不便"
run liqiang visit add --household "和平里 5-1-302" --category 纠纷调解 --note "楼上漏水，邻里矛盾"
TICKET=$("$BIN" --home "$WORK/wangfang" --json ticket open --title "楼道灯坏了" \
  --category 城市管理 --household "和平里 3 号楼" | field id)
echo "ticket $TICKET"
run wangfang status

say "Back at the station: both laptops sync"
run wangfang sync
run liqiang sync
run wangfang sync
run liqiang visit list

say "Both edit the ticket offline, then sync: both edits are kept, the conflict is shown"
run wangfang ticket update "${TICKET:0:8}" --status resolved
run liqiang ticket update "${TICKET:0:8}" --status in_progress
run wangfang sync
run liqiang sync
run wangfang sync
run liqiang ticket show "${TICKET:0:8}"

say "The grid's ledger on 李强's laptop: one household, and what is due, with no network"
run liqiang household list
run liqiang due --within 30

say "What is safe at the station"
run wangfang status
run station visit list
run station verify
