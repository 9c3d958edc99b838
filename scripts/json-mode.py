"""response_format json_object against free decoding, on a running server.

    target/py-venv/bin/python scripts/json-mode.py BASE_URL [MODEL]

Asks each prompt twice at temperature 0, free and with `response_format` json_object,
and prints how many answers `json.loads` reads as an object, the mean completion tokens
and the mean wall seconds per completion token of each (the mask's cost, with the
prefill and the HTTP round trip inside), and the ratio. Run it on an otherwise idle
machine: the timings are one client, one request at a time.
"""

import json
import sys
import time

import openai

BASE = sys.argv[1]
MODEL = sys.argv[2] if len(sys.argv) > 2 else "qwen2.5-coder-0.5b"
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=600)

PROMPTS = [
    "Describe a person named Ann who is 30 and lives in Oslo.",
    "List three fruits and their colors as JSON.",
    "Give me a JSON object with the capital cities of France, Japan and Peru.",
    "Return the result of 17 * 3 as JSON with the key 'product'.",
    "Write a JSON config for a web server: host, port and a list of allowed origins.",
    "What is the boiling point of water in Celsius and Fahrenheit? Reply in JSON.",
    "Summarise the plot of Romeo and Juliet as JSON with the keys title, characters and ending.",
    "Extract the date and the amount from: 'Paid $42.50 on March 3, 2024.' as JSON.",
    "A book has 320 pages and Tom reads 40 a day. How many days does he need? Answer in JSON.",
    "Name two planets and their moons as a JSON object.",
    "Convert this to JSON: name Bob, languages Rust and Python, years of experience 7.",
    "Give a JSON object describing a cat.",
]


def is_object(text):
    try:
        return isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, TypeError):
        return False


def run(prompt, json_mode):
    extra = {"response_format": {"type": "json_object"}} if json_mode else {}
    start = time.perf_counter()
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}],
        max_tokens=256, temperature=0, **extra)
    wall = time.perf_counter() - start
    c = r.choices[0]
    return is_object(c.message.content), r.usage.completion_tokens, wall, c.finish_reason


def main():
    rows = {False: [], True: []}
    for p in PROMPTS:
        for mode in (False, True):
            rows[mode].append(run(p, mode))
            ok, tokens, wall, finish = rows[mode][-1]
            print(f"{'json' if mode else 'free':4} ok={ok!s:5} tokens={tokens:3} "
                  f"wall={wall:5.2f}s finish={finish:6} {p[:50]}")
    print()
    print("| decoding | JSON objects | mean completion tokens | s per completion token |")
    print("|---|---:|---:|---:|")
    per_token = {}
    for mode in (False, True):
        r = rows[mode]
        tokens = sum(t for _, t, _, _ in r)
        per_token[mode] = sum(w for _, _, w, _ in r) / tokens
        print(f"| {'json_object' if mode else 'free'} | {sum(o for o, *_ in r)} of {len(r)} "
              f"| {tokens / len(r):.1f} | {per_token[mode]:.4f} |")
    print(f"\nseconds per token, json_object / free: {per_token[True] / per_token[False]:.3f}")


if __name__ == "__main__":
    main()
