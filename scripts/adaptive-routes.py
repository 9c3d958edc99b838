#!/usr/bin/env python3
"""Choose `adaptive`'s presets and threshold on training problems.

Given the out-of-fold predictions of `terse train-probe --predictions FILE` (each
problem scored by a probe fitted without it) and eval runs of candidate presets on
the same problems, prints what routing each problem by its score would have given:
every ordered pair of candidates (the base run included) as the easy and the hard
class's preset, at thresholds on the score's quartiles. Cost tokens are
decoded + probe + injected, as everywhere in terse. Nothing here is a result: the
choice is then run for real, with `--strategy adaptive`, on problems the probe and
this choice never saw.

Usage: scripts/adaptive-routes.py --predictions CV.jsonl --base RUN \
           [--signal long|wrong] PRESET=RUN...
"""
import argparse
import json
import sys
from pathlib import Path


def load_records(run):
    path = Path(run) / "records.jsonl"
    records = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON ({e})")
            if r.get("sample", 0) == 0:
                u = r["usage"]
                cost = (u["output_tokens"] + u.get("probe_prefill_tokens", 0)
                        + u.get("probe_decoded_tokens", 0) + u.get("injected_tokens", 0))
                records[r["id"]] = (bool(r["correct"]), cost)
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--base", required=True, help="the plain-CoT run the probe was trained on")
    ap.add_argument("--base-name", default="none", help="its preset name (default: none)")
    ap.add_argument("--signal", choices=["long", "wrong"], default="long")
    ap.add_argument("presets", nargs="+", metavar="PRESET=RUN")
    args = ap.parse_args()

    scores = {}
    with open(args.predictions) as f:
        for line in f:
            p = json.loads(line)
            scores[p["id"]] = p["p_long"] if args.signal == "long" else 1 - p["p_right"]
    base = load_records(args.base)
    presets = {}
    for spec in args.presets:
        name, _, run = spec.partition("=")
        if not run:
            sys.exit(f"'{spec}' is not PRESET=RUN")
        presets[name] = load_records(run)
    ids = sorted(set(scores) & set(base) & set.intersection(*(set(p) for p in presets.values())))
    if not ids:
        sys.exit("no problem is in the predictions, the base run and every preset run")
    n = len(ids)

    def point(answer):
        right = sum(answer(i)[0] for i in ids)
        cost = sum(answer(i)[1] for i in ids)
        return 100.0 * right / n, cost / n

    print(f"{n} problems; score = P({args.signal})")
    print("| routing | easy share | accuracy | mean cost tokens |")
    print("|---|---:|---:|---:|")
    candidates = {args.base_name: base, **presets}
    for name, runs in candidates.items():
        acc, cost = point(lambda i: runs[i])
        print(f"| {name} alone | | {acc:.1f}% | {cost:.1f} |")
    ordered = sorted(scores[i] for i in ids)
    for q in (0.25, 0.5, 0.75):
        t = ordered[int(q * n)]
        share = sum(scores[i] < t for i in ids) / n
        for easy_name, easy in candidates.items():
            for hard_name, hard in candidates.items():
                if easy_name == hard_name:
                    continue
                acc, cost = point(lambda i: easy[i] if scores[i] < t else hard[i])
                print(f"| easy → {easy_name}, hard → {hard_name} (score < {t:.3f} is easy) "
                      f"| {share:.0%} | {acc:.1f}% | {cost:.1f} |")

if __name__ == "__main__":
    main()
