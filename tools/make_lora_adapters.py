#!/usr/bin/env python3
"""Writes random LoRA adapters for a base GGUF model, in llama.cpp's GGUF LoRA format
(convert_lora_to_gguf.py's layout: general.type = adapter, adapter.type = lora, adapter.lora.alpha;
"<tensor>.lora_a" [in, rank] and ".lora_b" [rank, out], F16) and, for one of them, the same weights as
a PEFT directory (adapter_config.json + adapter_model.safetensors, Hugging Face row order for q/k).

The test fixtures (scripts/test.sh) and the LoRA goldens (tools/make_lora_goldens.py) use:
  NAME-r8.gguf    rank 8,  alpha 16, attention only (q, k, v, o)
  NAME-r16.gguf   rank 16, alpha 32, attention and FFN (all seven projections)
  NAME-r64.gguf   rank 64, alpha 16, attention and FFN
  NAME-r16-peft/  NAME-r16 as a PEFT directory
The benchmark uses --count N --rank R: N adapters NAME-bench-I.gguf (attention and FFN).
Deterministic for a given seed and numpy version.

Usage: python tools/make_lora_adapters.py BASE.gguf OUT_DIR NAME [--count N --rank R]
"""
import json
import os
import struct
import sys

import numpy as np
import gguf

ATTN = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output"]  # attn_qkv: Phi-3's fused q, k, v
FFN = ["ffn_gate", "ffn_up", "ffn_down"]
PEFT_MODULE = {"attn_qkv": "self_attn.qkv_proj", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"}


def base_shapes(reader):
    """(layer, target) -> (in, out) of the base model's matrices."""
    shapes = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in ATTN + FFN and parts[3] == "weight":
            shapes[(int(parts[1]), parts[2])] = (int(t.shape[0]), int(t.shape[1]))
    return shapes


def random_pairs(shapes, targets, rank, alpha, rng):
    """A ~ N(0, 1/in) and B sized so that the update, scale x B (A x), is about 0.15 x |x| / sqrt(in) per
    output whatever the rank: large enough to change the model's choices, small enough to leave it a
    language model (as a fine-tune does), so that its logits are as stable numerically as the base's."""
    b_std = 0.15 / (alpha / rank * np.sqrt(rank))
    pairs = {}
    for (layer, target), (n_in, n_out) in sorted(shapes.items()):
        if target not in targets:
            continue
        a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float16)
        b = (rng.standard_normal((n_out, rank)) * b_std).astype(np.float16)
        pairs[(layer, target)] = (a, b)
    return pairs


def write_gguf(path, arch, pairs, alpha):
    w = gguf.GGUFWriter(path, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(alpha))
    for (layer, target), (a, b) in pairs.items():
        # numpy (rows, cols) is ggml [cols, rows]: lora_a [in, rank], lora_b [rank, out].
        w.add_tensor(f"blk.{layer}.{target}.weight.lora_a", a)
        w.add_tensor(f"blk.{layer}.{target}.weight.lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_rows(b, heads):
    """llama.cpp's q/k row order back to Hugging Face's (the inverse of convert_hf_to_gguf's permute)."""
    out, rank = b.shape
    return b.reshape(heads, out // heads // 2, 2, rank).swapaxes(1, 2).reshape(out, rank)


def write_peft(directory, arch, pairs, rank, alpha, heads, kv_heads):
    os.makedirs(directory, exist_ok=True)
    tensors = {}
    for (layer, target), (a, b) in pairs.items():
        if arch == "llama" and target in ("attn_q", "attn_k"):
            b = hf_rows(b, heads if target == "attn_q" else kv_heads)
        prefix = f"base_model.model.model.layers.{layer}.{PEFT_MODULE[target]}"
        tensors[prefix + ".lora_A.weight"] = np.ascontiguousarray(a)
        tensors[prefix + ".lora_B.weight"] = np.ascontiguousarray(b)
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, array in tensors.items():
        data = array.tobytes()
        header[name] = {"dtype": "F16", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(directory, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)
    modules = sorted({PEFT_MODULE[t].split(".")[1] for (_, t) in pairs})
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": modules, "bias": "none",
              "use_rslora": False, "fan_in_fan_out": False, "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def main():
    args = sys.argv[1:]
    count = rank = None
    if "--count" in args:
        i = args.index("--count")
        count = int(args[i + 1])
        del args[i:i + 2]
    if "--rank" in args:
        i = args.index("--rank")
        rank = int(args[i + 1])
        del args[i:i + 2]
    base, out_dir, name = args
    reader = gguf.GGUFReader(base)
    arch = reader.fields["general.architecture"].contents()
    heads = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv_heads = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    shapes = base_shapes(reader)
    os.makedirs(out_dir, exist_ok=True)
    if count:
        for i in range(count):
            rng = np.random.default_rng(1000 + i)
            write_gguf(os.path.join(out_dir, f"{name}-bench-{i}.gguf"), arch, random_pairs(shapes, ATTN + FFN, rank or 16, 2 * (rank or 16), rng),
                       2 * (rank or 16))
        return
    for r, alpha, targets, seed in [(8, 16, ATTN, 8), (16, 32, ATTN + FFN, 16), (64, 16, ATTN + FFN, 64)]:
        pairs = random_pairs(shapes, targets, r, alpha, np.random.default_rng(seed))
        write_gguf(os.path.join(out_dir, f"{name}-r{r}.gguf"), arch, pairs, alpha)
        if r == 16:
            write_peft(os.path.join(out_dir, f"{name}-r16-peft"), arch, pairs, r, alpha, heads, kv_heads)


if __name__ == "__main__":
    main()
