#!/usr/bin/env python3
"""Where a model recalls its facts: `pmedit trace` over the first N records of a dataset, each
restored state's share of the gap p_clean - p_corrupt averaged over the facts whose gap is at least
0.05, at the subject's last token and at the prompt's last token, for every layer.

    scripts/trace-facts.py MODEL_DIR [--dataset FILE] [--facts N] [--window W] [--samples S]

The dataset defaults to MODEL_DIR/heldout.json (what `pmedit train-demo` writes). GPT-2's traces
(ROME's Figure 1) recover most of the gap from the MLPs at the subject's last token in the
middle layers; a model that looks facts up at the prompt's last token shows it in the
`mlp @ prompt` row instead. Standard library only; runs scripts/pmedit.
"""
import argparse
import json
import pathlib
import subprocess
import sys

PMEDIT = pathlib.Path(__file__).resolve().parent / "pmedit"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--dataset")
    ap.add_argument("--facts", type=int, default=12)
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--min-gap", type=float, default=0.05)
    args = ap.parse_args()
    dataset = args.dataset or f"{args.model}/heldout.json"
    records = json.load(open(dataset))[: args.facts]
    sums, used = {}, 0
    for r in records:
        prompt = r["prompt"].replace("{}", r["subject"])
        cmd = [str(PMEDIT), "--device", "cpu", "trace", "--model", args.model, "--prompt", prompt,
               "--subject", r["subject"], "--samples", str(args.samples), "--window", str(args.window), "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"pmedit trace failed on {prompt!r}:\n{out.stderr}")
        t = json.loads(out.stdout)
        gap = t["p_clean"] - t["p_corrupt"]
        if gap < args.min_gap:
            continue
        used += 1
        subject_last, prompt_last = t["subject"][1], len(t["tokens"]) - 1  # subject: [first, last]
        for kind in ("hidden", "mlp", "attn"):
            for pos, where in ((subject_last, "subject"), (prompt_last, "prompt")):
                row = [(p - t["p_corrupt"]) / gap for p in t[kind][pos]]
                key = f"{kind} @ {where}"
                sums[key] = [a + b for a, b in zip(sums.get(key, [0.0] * len(row)), row)]
    print(f"{used} of {len(records)} facts with p_clean - p_corrupt >= {args.min_gap}; "
          f"share of the gap recovered by restoring one state (window {args.window}), by layer:")
    if not used:
        return
    width = len(next(iter(sums.values())))
    print(f"{'':18}" + "".join(f"{layer:>6}" for layer in range(width)))
    for key, row in sums.items():
        print(f"{key:18}" + "".join(f"{x / used:6.2f}" for x in row))


if __name__ == "__main__":
    main()
