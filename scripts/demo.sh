#!/usr/bin/env bash
# Builds yizhan and runs a short demo of a volunteer's day, in a temporary home.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p yizhan-cli
yz() { ./target/release/yizhan --home "$HOME_DIR" "$@"; }
HOME_DIR=$(mktemp -d)/volunteer
trap 'rm -rf "$(dirname "$HOME_DIR")"' EXIT

step() { printf '\n\033[1m$ yizhan %s\033[0m\n' "$*"; }

step init --name 王芳
yz init --name 王芳

step visit add --household "和平里 3-2-101" --category 扶贫解困 ...
yz visit add --household "和平里 3-2-101" --grid 和平里网格 --category 扶贫解困 \
  --resident 张秀英 --resident 李建国 --needs "冬季取暖补贴" --note "老人独居，行动不便" --at 2026-11-20

step ticket open --title "楼道灯坏了" --category 城市管理 ...
TICKET=$(yz --json ticket open --title "楼道灯坏了" --category 城市管理 \
  --household "和平里 3 号楼" --grid 和平里网格 --priority high | sed 's/.*"id":"\([0-9a-f]*\)".*/\1/')
echo "opened ticket $TICKET"

step visit add --household "和平里 3 号楼 2 单元" --ticket "${TICKET:0:8}" ...
yz visit add --household "和平里 3 号楼 2 单元" --grid 和平里网格 --category 城市管理 \
  --ticket "${TICKET:0:8}" --note "确认 2-5 层无照明"

step ticket update "${TICKET:0:8}" --status in_progress
yz ticket update "${TICKET:0:8}" --status in_progress
step ticket comment "${TICKET:0:8}" "已报物业维修"
yz ticket comment "${TICKET:0:8}" "已报物业维修"

step visit list
yz visit list
step ticket show "${TICKET:0:8}"
yz ticket show "${TICKET:0:8}"

step export --kind visits --format csv
yz export --kind visits --format csv

step verify
yz verify
