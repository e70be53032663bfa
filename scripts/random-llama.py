#!/usr/bin/env python3
"""Writes a random Llama-family model directory of a real shape, for measuring time and memory at
scale (no weights download): config.json, sharded bf16/f16/f32 safetensors with
model.safetensors.index.json, and a tokenizer.json (the SentencePiece-style fixture tokenizer,
whose ids fit any vocabulary of 702 or more).

    python scripts/random-llama.py --shape llama-2-7b --out /tmp/llama2-7b    # 13.5 GB in bf16
    python scripts/random-llama.py --shape llama-3-8b --out /tmp/llama3-8b

Needs only numpy. Weights are N(0, 0.02) (norm weights 1), written one tensor at a time, so the
script holds one tensor in memory.
"""
import argparse
import json
import os
import shutil

import numpy as np

SHAPES = {
    # vocab, hidden, intermediate, layers, heads, kv heads, rope theta, tied
    "llama-2-7b": (32000, 4096, 11008, 32, 32, 32, 10000.0, False),
    "llama-3-8b": (128256, 4096, 14336, 32, 32, 8, 500000.0, False),
    "llama-3.2-1b": (128256, 2048, 8192, 16, 32, 8, 500000.0, True),
    "qwen2-0.5b": (151936, 896, 4864, 24, 14, 2, 1000000.0, True),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensors(vocab, d, f, layers, heads, kv, tied):
    dh = d // heads
    yield "model.embed_tokens.weight", (vocab, d)
    for l in range(layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (d,)
        yield p + "self_attn.q_proj.weight", (heads * dh, d)
        yield p + "self_attn.k_proj.weight", (kv * dh, d)
        yield p + "self_attn.v_proj.weight", (kv * dh, d)
        yield p + "self_attn.o_proj.weight", (d, heads * dh)
        yield p + "post_attention_layernorm.weight", (d,)
        yield p + "mlp.gate_proj.weight", (f, d)
        yield p + "mlp.up_proj.weight", (f, d)
        yield p + "mlp.down_proj.weight", (d, f)
    yield "model.norm.weight", (d,)
    if not tied:
        yield "lm_head.weight", (vocab, d)


def encode(values, dtype):
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    # bf16: the top half of the f32 bits, rounded to nearest even.
    bits = values.astype("<f4").view("<u4")
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    vocab, d, f, layers, heads, kv, theta, tied = SHAPES[args.shape]
    dtype = {"bf16": "BF16", "f16": "F16", "f32": "F32"}[args.dtype]
    width = 4 if dtype == "F32" else 2
    os.makedirs(args.out, exist_ok=False)
    rng = np.random.default_rng(args.seed)

    # Shards: consecutive tensors up to --shard-gb each.
    shards, current, size = [], [], 0
    for name, shape in tensors(vocab, d, f, layers, heads, kv, tied):
        nbytes = int(np.prod(shape)) * width
        if current and size + nbytes > args.shard_gb * 1e9:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            n = int(np.prod(shape)) * width
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = fname
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(args.out, fname), "wb") as out:
            out.write(len(text).to_bytes(8, "little"))
            out.write(text)
            for name, shape in shard:
                if len(shape) == 1:
                    values = np.ones(shape, dtype=np.float32)
                else:
                    values = rng.standard_normal(shape, dtype=np.float32) * 0.02
                out.write(encode(values, dtype))
        total += offset
        print(f"{fname}: {offset / 1e9:.2f} GB", flush=True)
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=1)
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": f, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "rms_norm_eps": 1e-5, "rope_theta": theta, "max_position_embeddings": 4096,
        "tie_word_embeddings": tied, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype],
    }
    with open(os.path.join(args.out, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    shutil.copyfile(os.path.join(ROOT, "tests", "fixtures", "tiny-llama2", "tokenizer.json"),
                    os.path.join(args.out, "tokenizer.json"))
    print(f"{args.out}: {args.shape}, {total / 1e9:.2f} GB of {dtype}")


if __name__ == "__main__":
    main()
