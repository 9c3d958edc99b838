#!/usr/bin/env bash
# Reproduces docs/strategies/README.md: every strategy on the same 200-problem seeded
# sample of GSM8K train, Qwen2.5-Coder-1.5B, greedy, 512-token cap, 8 requests in flight,
# then the paired comparison against `none` and the oracle bound.
#
# Usage: scripts/strategies.sh [STRATEGY...]   (default: the strategies in the table)
# A STRATEGY is a chain (`loop-guard+early-exit`) or a `--strategy-config` file
# (`docs/strategies/program/program-whole.toml`, labelled by its stem).
# Runs resume where they stopped (`--resume`); results go to runs/strategies/<label>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="$(cd .. && pwd)/shared"
DATASET="gsm8k:${SHARED}/data/gsm8k/train.jsonl"
OUT=runs/strategies
STRATEGIES=("$@")
[ ${#STRATEGIES[@]} -eq 0 ] && STRATEGIES=(none concise-hint loop-guard early-exit)

cargo build --release -p terse
label_of() {
  case "$1" in
    *.toml) local stem="${1##*/}"; echo "q15-${stem%.toml}" ;;
    *) echo "q15-${1//+/_}" ;;
  esac
}
for s in "${STRATEGIES[@]}"; do
  label="$(label_of "$s")"
  case "$s" in
    *.toml) choice=(--strategy-config "$s") ;;
    *) choice=(--strategy "$s") ;;
  esac
  ./target/release/terse eval -m qwen2.5-coder-1.5b -t 2 --temperature 0 -n 512 \
    --concurrency 8 --dataset "$DATASET" --sample 200 --sample-seed 2026 \
    "${choice[@]}" --label "$label" --out "$OUT/$label" --resume
done
runs=()
for s in none "${STRATEGIES[@]}"; do
  d="$OUT/$(label_of "$s")"
  [ -d "$d" ] && [[ ! " ${runs[*]} " =~ " $d " ]] && runs+=("$d")
done
./target/release/terse compare "${runs[@]}" --out "$OUT/compare"
