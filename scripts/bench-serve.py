#!/usr/bin/env python3
"""Serving benchmark: N concurrent streaming clients against an OpenAI-compatible URL
(`terse serve`, `llama-server --parallel N`, vLLM, ...).

Each client sends chat requests one after another, streamed with usage, taking
questions in turn from a prompt set (GSM8K train questions from a JSONL file with a
`question` field, or a few built-in ones). Reports requests/s, output tokens/s,
time to first token (TTFT), inter-token latency (ITL, between streamed content
chunks) and end-to-end latency, median and p99, plus failed requests.

    scripts/bench-serve.py --url http://127.0.0.1:8080 --model qwen2.5-coder-0.5b \
        --clients 8 --requests 64 --max-tokens 128 \
        --prompts ../shared/data/gsm8k/train.jsonl [--strategy early-exit] [--json]

Standard library only. `--strategy` sends terse's extension object (other servers
ignore it). Output: a Markdown table row set on stdout, or one JSON object with --json.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

BUILT_IN = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
    "babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the "
    "money she needs. Her parents decided to give her $15 for that purpose, and her "
    "grandparents twice as much as her parents. How much more money does Betty need?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages "
    "does he write a year?",
]


def prompts(path, limit):
    if not path:
        return BUILT_IN
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line)["question"])
            if len(out) >= limit:
                break
    return out or BUILT_IN


def one_request(url, model, question, max_tokens, strategy, api_key):
    """Streams one chat completion; returns (ttft, [itl...], e2e, output tokens)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if strategy:
        body["terse"] = {"strategy": strategy}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.perf_counter()
    conn.request("POST", parts.path.rstrip("/") + "/v1/chat/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft, last, gaps, tokens, chunks = None, None, [], None, 0
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"].get("completion_tokens")
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            if delta.get("content") or delta.get("reasoning_content"):
                now = time.perf_counter()
                chunks += 1
                if ttft is None:
                    ttft = now - start
                else:
                    gaps.append(now - last)
                last = now
    conn.close()
    e2e = time.perf_counter() - start
    return ttft if ttft is not None else e2e, gaps, e2e, tokens if tokens is not None else chunks


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="base URL, without /v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=32, help="requests in all")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", help="JSONL with a `question` field (GSM8K train)")
    ap.add_argument("--strategy", help="terse strategy chain (terse's extension object)")
    ap.add_argument("--api-key")
    ap.add_argument("--label", default="")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    questions = prompts(args.prompts, args.requests)
    lock = threading.Lock()
    next_index = [0]
    results, failures = [], []

    def client():
        while True:
            with lock:
                i = next_index[0]
                if i >= args.requests:
                    return
                next_index[0] += 1
            q = questions[i % len(questions)]
            try:
                r = one_request(args.url, args.model, q, args.max_tokens, args.strategy, args.api_key)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    failures.append(str(e))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start

    ttft = [r[0] for r in results]
    itl = [g for r in results for g in r[1]]
    e2e = [r[2] for r in results]
    tokens = sum(r[3] for r in results)
    report = {
        "label": args.label or args.url,
        "clients": args.clients,
        "requests": len(results),
        "failed": len(failures),
        "wall_s": wall,
        "requests_per_s": len(results) / wall,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / wall,
        "ttft_p50_s": pct(ttft, 0.5),
        "ttft_p99_s": pct(ttft, 0.99),
        "itl_p50_s": pct(itl, 0.5),
        "itl_p99_s": pct(itl, 0.99),
        "e2e_p50_s": statistics.median(e2e) if e2e else float("nan"),
    }
    if failures:
        print(f"{len(failures)} failed; first: {failures[0]}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        print("| server | clients | req/s | out tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | e2e p50 | failed |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        r = report
        print(
            f"| {r['label']} | {r['clients']} | {r['requests_per_s']:.2f} | {r['output_tokens_per_s']:.1f} "
            f"| {r['ttft_p50_s'] * 1000:.0f} ms | {r['ttft_p99_s'] * 1000:.0f} ms "
            f"| {r['itl_p50_s'] * 1000:.1f} ms | {r['itl_p99_s'] * 1000:.1f} ms "
            f"| {r['e2e_p50_s']:.2f} s | {r['failed']} |"
        )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
