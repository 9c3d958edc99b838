#!/usr/bin/env bash
# Serving benchmark, side by side on one machine: `terse serve` (strategy none, then
# early-exit) and `llama-server --parallel N`, same model, N concurrent streaming
# clients on GSM8K-train questions (scripts/bench-serve.py). Prints one Markdown table.
# Usage: scripts/serve-compare.sh [MODEL_ALIAS] [CLIENTS] [REQUESTS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."

ALIAS="${1:-qwen2.5-coder-0.5b}"
CLIENTS="${2:-8}"
REQUESTS="${3:-32}"
MAX_TOKENS="${4:-256}"
SHARED="$(cd .. && pwd)/shared"
PROMPTS="$SHARED/data/gsm8k/train.jsonl"
TERSE=./target/release/terse
LLAMA_BIN="$(bash scripts/build-llama-cpp.sh)"
MODEL="$("$TERSE" models list | awk -v a="$ALIAS" '$1 == a && $2 == "yes" {print $5}')"
[ -n "$MODEL" ] || { echo "$ALIAS is not pulled: run terse models pull $ALIAS" >&2; exit 1; }
CTX=$(( (MAX_TOKENS + 512) ))
PORT_T=18431
PORT_L=18432

wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
    sleep 0.5
  done
  echo "server on port $1 never became healthy" >&2
  return 1
}
bench() { # URL STRATEGY LABEL
  local extra=()
  [ -n "$2" ] && extra=(--strategy "$2")
  python3 scripts/bench-serve.py --url "$1" --model "$ALIAS" --clients "$CLIENTS" \
    --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" --prompts "$PROMPTS" \
    --label "$3" "${extra[@]}" | tail -n +3
}

echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(date -u +%F) terse $(git rev-parse --short HEAD)"
echo "| server | clients | req/s | out tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | e2e p50 | failed |"
echo "|---|---|---|---|---|---|---|---|---|---|"

"$TERSE" serve -m "$ALIAS" -t 2 -c "$CTX" --max-sequences "$CLIENTS" --port "$PORT_T" \
  --served-model-name "$ALIAS" >/tmp/serve-compare-terse.log 2>&1 &
TPID=$!
trap 'kill $TPID 2>/dev/null || true' EXIT
wait_healthy "$PORT_T"
bench "http://127.0.0.1:$PORT_T" "" "terse serve (none)"
bench "http://127.0.0.1:$PORT_T" "early-exit" "terse serve (early-exit)"
kill $TPID; wait $TPID 2>/dev/null || true

"$LLAMA_BIN/llama-server" -m "$MODEL" -t 2 -c $(( CTX * CLIENTS )) --parallel "$CLIENTS" \
  --port "$PORT_L" --no-webui >/tmp/serve-compare-llama.log 2>&1 &
LPID=$!
trap 'kill $LPID 2>/dev/null || true' EXIT
wait_healthy "$PORT_L"
bench "http://127.0.0.1:$PORT_L" "" "llama-server --parallel $CLIENTS"
kill $LPID; wait $LPID 2>/dev/null || true
