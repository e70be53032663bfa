#!/usr/bin/env python3
"""The PyTorch side of `bench/compare.py`: the operations `pmedit bench` times, done the way a
researcher would in PyTorch on the CPU — Hugging Face transformers for the forward pass,
generation and C0 statistics, and a straightforward PyTorch implementation of ROME / MEMIT /
EMMET from docs/MATH.md (keys at the subject's last token, 20 Adam steps of δ per request with the
NLL + KL + weight-decay loss, the closed-form solves).

    python bench/pytorch/bench.py --model DIR --op forward [--runs 1] [--threads 2]

prints one JSON object per run: {"op": ..., "seconds": ...}. Never needed by CI.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch


def load(model_dir):
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()


def tokens(cfg, batch, seq):
    return torch.tensor([[(b * 7919 + t * 104729) % cfg.vocab_size for t in range(seq)] for b in range(batch)])


def c_proj_input(model, layer, ids):
    cap = []
    h = model.transformer.h[layer].mlp.c_proj.register_forward_hook(lambda m, i, o: cap.append(i[0]))
    try:
        model(ids)
    finally:
        h.remove()
    return cap[0]


class Editor:
    """ROME / MEMIT / EMMET, one value optimisation per request (as the reference code)."""

    def __init__(self, model, tok, layer, lam, alpha, steps=20, lr=0.5, wd=0.5, kl=0.0625, clamp=4.0):
        self.m, self.tok, self.layer, self.lam, self.alpha = model, tok, layer, lam, alpha
        self.steps, self.lr, self.wd, self.kl, self.clamp = steps, lr, wd, kl, clamp
        d_inner = model.transformer.h[layer].mlp.c_proj.weight.shape[0]
        g = torch.Generator().manual_seed(0)
        a = torch.randn(d_inner, d_inner, generator=g) / d_inner ** 0.5
        self.c0 = a @ a.T + torch.eye(d_inner)  # a well-conditioned SPD C0

    def request_ids(self, i):
        """The same synthetic request as `pmedit bench`: "Person {i} was born in the city of" → Paris."""
        enc = lambda s: self.tok.encode(s, add_special_tokens=False)
        subject = enc(f"Person {i}")
        return subject, subject + enc(" was born in the city of"), enc(" Paris"), subject + enc(" is a")

    def key(self, subject, prompt):
        with torch.no_grad():
            return c_proj_input(self.m, self.layer, torch.tensor([prompt]))[0, len(subject) - 1]

    def value(self, subject, prompt, target, kl_prompt):
        m, layer = self.m, self.layer
        block = m.transformer.h[layer]
        rows = [prompt + target[:-1], kl_prompt]
        n = max(len(r) for r in rows)
        x = torch.tensor([r + [0] * (n - len(r)) for r in rows])
        pos = [len(subject) - 1, len(subject) - 1]
        delta = torch.zeros(m.config.n_embd, requires_grad=True)
        cap = {}

        def hook(mod, i, o):
            cap["v"] = o[0, pos[0]].detach().clone()
            o = o.clone()
            for b, p in enumerate(pos):
                o[b, p] = o[b, p] + delta
            return o

        h = block.mlp.register_forward_hook(hook)
        try:
            with torch.no_grad():
                p0 = torch.log_softmax(m(x).logits[1, pos[1]], -1)
            opt = torch.optim.Adam([delta], lr=self.lr)
            v_init = None
            for _ in range(self.steps):
                opt.zero_grad()
                logits = m(x).logits
                if v_init is None:
                    v_init = cap["v"]
                lp = torch.log_softmax(logits[0, len(prompt) - 1:len(prompt) - 1 + len(target)], -1)
                nll = -lp[torch.arange(len(target)), torch.tensor(target)].mean()
                pd = torch.log_softmax(logits[1, pos[1]], -1)
                kl = torch.nn.functional.kl_div(pd, p0, log_target=True, reduction="sum")
                loss = nll + self.kl * kl + self.wd * delta.norm() / v_init.norm() ** 2
                if loss.item() < 5e-2:
                    break
                loss.backward()
                opt.step()
                with torch.no_grad():
                    mx = self.clamp * v_init.norm()
                    if delta.norm() > mx:
                        delta.mul_(mx / delta.norm())
        finally:
            h.remove()
        return v_init + delta.detach()

    def solve(self, K, R, algo):
        """Δ (d_inner × d) for keys K (d_inner × E) and residuals R (d × E)."""
        C = self.lam * self.c0
        L = torch.linalg.cholesky(C)
        Q = torch.cholesky_solve(K, L)
        G = K.T @ Q
        E = K.shape[1]
        if algo == "memit":
            A = torch.eye(E) + G
        else:
            A = G + self.alpha * torch.eye(E)
        return Q @ torch.linalg.solve(A, R.T)

    def edit(self, n, algo):
        block = self.m.transformer.h[self.layer]
        W = block.mlp.c_proj.weight  # [d_inner, d]
        ks, rs = [], []
        for i in range(n):
            subject, prompt, target, kl_prompt = self.request_ids(i)
            k = self.key(subject, prompt)
            v = self.value(subject, prompt, target, kl_prompt)
            ks.append(k)
            rs.append(v - k @ W)
        K, R = torch.stack(ks, 1).detach(), torch.stack(rs, 1).detach()
        with torch.no_grad():
            W += self.solve(K, R, algo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--op", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    op = a.op
    if op == "load":
        t = time.perf_counter()
        load(a.model)
        s = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"op": op, "seconds": s, "peak_rss_mb": rss}))
        return
    if op.startswith("matmul") or op.startswith("cholesky"):
        n = int(op.split("-")[1])
        g = torch.Generator().manual_seed(0)
        a_ = torch.randn(n, n, generator=g)
        if op.startswith("matmul"):
            f, flops = (lambda: a_ @ a_), 2 * n ** 3
        else:
            spd = a_ @ a_.T / n + torch.eye(n)
            b = torch.randn(n, 64, generator=g)
            f = lambda: torch.cholesky_solve(b, torch.linalg.cholesky(spd))
            flops = n ** 3 / 3 + 2 * n * n * 64
        f()
        for _ in range(a.runs):
            t = time.perf_counter()
            f()
            s = time.perf_counter() - t
            print(json.dumps({"op": op, "seconds": s, "gflops": flops / s / 1e9}), flush=True)
        return
    model = load(a.model)
    cfg = model.config
    ids = tokens(cfg, a.batch, min(a.seq, cfg.n_positions))
    layer = cfg.n_layer // 2
    last = round((cfg.n_layer - 1) * 17 / 47)
    if op == "forward":
        def f():
            with torch.no_grad():
                model(ids).logits[:, -1].sum().item()
    elif op == "generate":
        n_new = min(32, cfg.n_positions - 1)
        def f():
            with torch.no_grad():
                model.generate(ids[:1, :1], max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                               pad_token_id=0)
    elif op == "stats":
        d_inner = model.transformer.h[layer].mlp.c_proj.weight.shape[0]
        def f():
            with torch.no_grad():
                k = c_proj_input(model, layer, ids).reshape(-1, d_inner)
                (k.T @ k).sum().item()
    elif op == "rome" or (op.split("-")[0] in ("emmet", "memit") and len(op.split("-")) == 2):
        algo, n = (op, 1) if op == "rome" else (op.split("-")[0], int(op.split("-")[1]))
        lam, alpha = (1.0, 0.0) if algo == "rome" else (100.0, 0.1)
        from transformers import AutoTokenizer
        ed = Editor(model, AutoTokenizer.from_pretrained(a.model), last, lam, alpha)
        f = lambda: ed.edit(n, "emmet" if algo == "rome" else algo)
    elif op.startswith("solve-"):
        algo, n = op.split("-")[1], int(op.split("-")[2])
        ed = Editor(model, None, last, 100.0, 0.1)
        d_inner = ed.c0.shape[0]
        g = torch.Generator().manual_seed(1)
        K = torch.randn(d_inner, n, generator=g)
        R = torch.randn(cfg.n_embd, n, generator=g)
        f = lambda: ed.solve(K, R, algo)
    else:
        sys.exit(f"unknown op {op}")
    f()  # warm-up
    for _ in range(a.runs):
        t = time.perf_counter()
        f()
        print(json.dumps({"op": op, "seconds": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
