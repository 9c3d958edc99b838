#!/usr/bin/env bash
# Issue 11's runs: self-consistency fixed k=5, adaptive (Beta 0.95 and a window of 2),
# greedy `none` and `verify`, all on the same 100 GSM8K-train problems with the 0.5B
# model, then `terse compare`; serial4/batched4 time siblings against one trace at a
# time. `terse oracle runs/consistency/q05-fixed5` replays other stop rules.
# `refine2` is Parallel-Distill-Refine with two drafts (T = 0.7) and one greedy refined
# answer; `sr` is Sequential Refinement (one greedy draft, then the refined answer).
# `greedy-check` is the rule found by replaying those traces (a greedy trace, checked
# by one sample, a third to break a tie), run for real on a fresh draw: SEED=31.
# Usage: [LIMIT=N] [SEED=S] scripts/consistency.sh [RUN...] (default: the four accuracy
# runs; LIMIT runs only the first N of the 100, labelled q05-RUN-N; SEED draws another
# 100, labelled q05-RUN-sS; OFFSET=K skips the first K of the 100, labelled q05-RUN-fromK;
# MODEL=qwen2.5-coder-1.5b runs the 1.5B, labelled q15-RUN).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="$(cd .. && pwd)/shared"
DATASET="gsm8k:${SHARED}/data/gsm8k/train.jsonl"
OUT=runs/consistency
MODEL="${MODEL:-qwen2.5-coder-0.5b}"
case "$MODEL" in
  qwen2.5-coder-0.5b) prefix=q05 ;;
  qwen2.5-coder-1.5b) prefix=q15 ;;
  *) echo "MODEL must be qwen2.5-coder-0.5b or qwen2.5-coder-1.5b, not $MODEL" >&2; exit 2 ;;
esac
RUNS=("$@")
[ ${#RUNS[@]} -eq 0 ] && RUNS=(fixed5 none beta window2)

cargo build --release -p terse
SEED="${SEED:-2026}"
OFFSET="${OFFSET:-0}"
suffix="${LIMIT:+-$LIMIT}"
[ "$OFFSET" != 0 ] && suffix="$suffix-from$OFFSET"
[ "$SEED" != 2026 ] && suffix="$suffix-s$SEED"
common=(-m "$MODEL" -t 2 -n 512 --dataset "$DATASET" --sample 100 --sample-seed "$SEED" --resume)
for run in "${RUNS[@]}"; do
  case "$run" in
    none) args=(--temperature 0 --concurrency 8 --strategy none) ;;
    verify) args=(--temperature 0 --concurrency 8 --strategy verify) ;;
    fixed5) args=(--temperature 0.7 --concurrency 2 --strategy consistency
                  --strategy-opt rule=fixed --strategy-opt max_samples=5) ;;
    beta) args=(--temperature 0.7 --concurrency 8 --strategy consistency
                --strategy-opt rule=beta --strategy-opt max_samples=5) ;;
    window2) args=(--temperature 0.7 --concurrency 4 --strategy consistency
                   --strategy-opt rule=window --strategy-opt window=2 --strategy-opt max_samples=5) ;;
    greedy-check) args=(--temperature 0.7 --concurrency 4 --strategy consistency
                        --strategy-opt rule=window --strategy-opt window=2 --strategy-opt max_samples=3
                        --strategy-opt first_greedy=true) ;;
    refine2) args=(--temperature 0 --concurrency 8 --strategy refine --strategy-opt drafts=2) ;;
    sr) args=(--temperature 0 --concurrency 8 --strategy refine --strategy-opt drafts=1
              --strategy-opt temperature=0) ;;
    # Timing: the same five traces of the first 4 problems, one at a time vs as
    # five siblings in one batch (no cache, one problem at a time).
    serial4) args=(--temperature 0.7 --concurrency 1 --limit 4 --no-cache --strategy consistency
                    --strategy-opt rule=fixed --strategy-opt max_samples=5 --strategy-opt round=1) ;;
    batched4) args=(--temperature 0.7 --concurrency 1 --limit 4 --no-cache --strategy consistency
                     --strategy-opt rule=fixed --strategy-opt max_samples=5 --strategy-opt round=5) ;;
    *) echo "unknown run $run (fixed5, none, verify, beta, window2, greedy-check, refine2, sr, serial4, batched4)" >&2; exit 2 ;;
  esac
  label="$prefix-$run$suffix"
  ./target/release/terse eval "${common[@]}" "${args[@]}" ${LIMIT:+--limit "$LIMIT"} --offset "$OFFSET" \
    --label "$label" --out "$OUT/$label"
done
runs=()
for run in none fixed5 beta window2 greedy-check verify refine2 sr; do
  [ -d "$OUT/$prefix-$run$suffix" ] && runs+=("$OUT/$prefix-$run$suffix")
done
./target/release/terse compare "${runs[@]}" --out "$OUT/compare-$prefix$suffix"
