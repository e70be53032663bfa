#!/usr/bin/env python3
"""pmedit vs PyTorch on this machine, side by side, written to BENCHMARKS.md.

    python bench/compare.py --runs 5 [--rounds 3] [--quick]   (in a venv with torch + transformers)

For every operation the two stacks run back to back — pmedit (`pmedit bench --op OP`) and the
PyTorch reference (`bench/pytorch/bench.py --op OP`), each with one warm-up and then `--runs`
timed runs in one process — so both see the same machine state. The rows that take seconds
repeat that `--rounds` times, alternating which stack goes first (pmedit, PyTorch, PyTorch,
pmedit, …), and pool the runs: on a shared 2-core VM whose speed drifts ±20 % over minutes, one
back-to-back pair can land on either side of a drift. The table reports medians,
min–max, the ratio PyTorch/pmedit (> 1 means pmedit is faster) and, for the compute-bound rows,
the fraction of each stack's own measured matmul peak. Never needed by CI.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PMEDIT = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/pmedit-target")), "debug", "pmedit")
PY = sys.executable


def run(cmd, timeout):
    t = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    return rows, time.time() - t


def stack(kind, model, op, runs, device):
    if kind == "pmedit":
        cmd = [PMEDIT, "--device", device, "bench", "--model", model, "--op", op, "--runs", str(runs)]
    else:
        cmd = [PY, os.path.join(ROOT, "bench/pytorch/bench.py"), "--model", model, "--op", op, "--runs", str(runs)]
    if op == "load":  # a fresh process per run: load time and peak RSS of that process
        rows = []
        for _ in range(runs):
            rows += run(cmd[:-2] + ["--runs", "1"], 3600)[0]
        return rows
    return run(cmd, 7200)[0]


def summary(rows):
    s = [r["seconds"] for r in rows]
    return statistics.median(s), min(s), max(s)


# (label, op, model key, flops(config) or None, what it is bound by)
def flops_forward(c):
    n = 16 * 32
    body = 12 * c["n_layer"] * c["n_embd"] ** 2 * 2 * n
    head = 2 * n * c["n_embd"] * c["vocab_size"]
    return body + head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--small", default=os.path.expanduser("~/.cache/pmedit-gpt2-small"))
    ap.add_argument("--demo", default=os.path.join(ROOT, "public/models/demo"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the short rows")
    ap.add_argument("--quick", action="store_true", help="skip the long edit batches")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = ap.parse_args()
    demo_cfg = json.load(open(os.path.join(a.demo, "config.json")))
    models = {
        "gpt2-small (124M, random)": a.small,
        f"demo ({demo_cfg['n_layer']} layers, d = {demo_cfg['n_embd']})": a.demo,
    }
    cfg = {k: json.load(open(os.path.join(v, "config.json"))) for k, v in models.items()}
    small, demo = list(models)
    short = a.rounds  # the rows of seconds: alternating rounds
    plan = [
        (small, "matmul-2048", a.runs, short),
        (small, "load", a.runs, 1),
        (small, "forward", a.runs, short),
        (small, "generate", a.runs, short),
        (small, "stats", a.runs, short),
        (small, "rome", a.runs, 1),
        (small, "emmet-16", 3 if a.quick else a.runs, 1),
        (small, "solve-emmet-16", a.runs, short),
        (small, "solve-emmet-256", a.runs, short),
        (small, "solve-emmet-1024", a.runs, short),
        (small, "solve-memit-1024", a.runs, short),
        (small, "cholesky-3072", a.runs, short),
        (small, "cholesky-6400", 3 if a.quick else a.runs, short),
        (demo, "rome", a.runs, 1),
        (demo, "emmet-16", a.runs, 1),
        (demo, "memit-16", a.runs, 1),
        (demo, "emmet-256", 1 if a.quick else 3, 1),
        (demo, "memit-256", 1 if a.quick else 3, 1),
    ]
    if not a.quick:
        plan += [(demo, "emmet-1024", 1, 1), (demo, "memit-1024", 1, 1)]
    results = []
    peak = {}
    for key, op, runs, rounds in plan:
        row = {"model": key, "op": op, "runs": runs * rounds}
        pooled = {"pmedit": [], "pytorch": []}
        for r in range(rounds):
            for kind in ("pmedit", "pytorch") if r % 2 == 0 else ("pytorch", "pmedit"):
                pooled[kind] += stack(kind, models[key], op, runs, a.device)
        for kind, rows in pooled.items():
            row[kind] = summary(rows)
            if op.startswith("matmul"):
                peak[kind] = statistics.median(r["gflops"] for r in rows)
            if "gflops" in rows[0]:
                row[kind + "_gflops"] = statistics.median(r["gflops"] for r in rows)
            if "peak_rss_mb" in rows[0]:
                row[kind + "_rss"] = max(r["peak_rss_mb"] or 0 for r in rows)
            print(kind, key, op, row[kind], flush=True)
        if op == "forward":
            f = flops_forward(cfg[key])
            row["pmedit_gflops"] = f / row["pmedit"][0] / 1e9
            row["pytorch_gflops"] = f / row["pytorch"][0] / 1e9
        results.append(row)

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    lines = [
        "# Benchmarks: pmedit vs PyTorch on the same machine",
        "",
        f"Written by `python bench/compare.py --runs {a.runs}{' --quick' if a.quick else ''}` (commit `{commit}`, "
        f"{time.strftime('%Y-%m-%d')}). Machine: {cpu}, {os.cpu_count()} cores, pmedit `--device {a.device}` "
        "(burn `flex`), PyTorch " + subprocess.run([PY, "-c", "import torch;print(torch.__version__)"],
                                                   capture_output=True, text=True).stdout.strip()
        + " on the CPU with 2 threads. Each row: both stacks back to back, one warm-up each, median of the "
        f"runs (min–max); the rows of seconds repeat that {a.rounds} times, alternating which stack goes first, "
        "and pool the runs. **Ratio = PyTorch time / pmedit time** (> 1: pmedit faster). Peak = each stack's "
        "own median GFLOP/s on a 2048² f32 matmul measured in the same run: "
        f"pmedit {peak.get('pmedit', float('nan')):.1f}, PyTorch {peak.get('pytorch', float('nan')):.1f} GFLOP/s.",
        "",
        "| model | operation | runs | pmedit s (min–max) | PyTorch s (min–max) | ratio | pmedit GFLOP/s (% peak) | PyTorch GFLOP/s (% peak) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pm, pt = r["pmedit"], r["pytorch"]
        def g(kind):
            x = r.get(kind + "_gflops")
            return f"{x:.1f} ({100 * x / peak[kind]:.0f} %)" if x and kind in peak else ""
        extra = ""
        if "pmedit_rss" in r:
            extra = f" — peak RSS {r['pmedit_rss']:.0f} MB vs {r['pytorch_rss']:.0f} MB"
        lines.append(
            f"| {r['model']} | {r['op']}{extra} | {r['runs']} | {pm[0]:.3f} ({pm[1]:.3f}–{pm[2]:.3f}) | "
            f"{pt[0]:.3f} ({pt[1]:.3f}–{pt[2]:.3f}) | {pt[0] / pm[0]:.2f}× | {g('pmedit')} | {g('pytorch')} |"
        )
    notes_path = os.path.join(ROOT, "bench/NOTES.md")
    if os.path.exists(notes_path):
        lines += ["", open(notes_path).read().strip()]
    with open(a.out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(a.out + ".tmp", a.out)
    json.dump(results, open(os.path.join(ROOT, "bench/last-run.json"), "w"), indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
