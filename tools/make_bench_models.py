#!/usr/bin/env python3
"""Writes the two random-weight models of the architecture benchmark (docs/benchmarks.md, "Model
catalogue"), at realistic sizes, Q4_0 throughout (what llama-quantize's Q4_0 makes; Python's gguf
cannot write K-quants):

  llama3-1b-bench.gguf   Llama 3.2 1B's shape: n_embd 2048, 16 layers, 32 heads / 8 KV heads of 64,
                         feed-forward 8192, rope_freqs, tied output; SmolLM2's 49152-token vocabulary
                         (Llama 3's 128k would make the output layer 2.6x larger)
  moe-8x2-bench.gguf     qwen3moe: n_embd 2048, 16 layers, 16 heads / 4 KV heads of 128, 8 experts of
                         1536, top-2 (1.2B expert weights, 0.3B of them read per token)

Each layer's tensors are drawn once per shape and reused by every layer (the bytes a decode step
reads are the same; drawing 1.5B values in Python would take minutes). Not for accuracy tests.

Usage: python tools/make_bench_models.py SMOLLM2.gguf OUT_DIR
"""
import os
import sys

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def full_vocabulary(source):
    reader = gguf.GGUFReader(source)
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [field.contents(i) for i in range(len(field.data))]
    types = [int(reader.fields["tokenizer.ggml.token_type"].contents(i)) for i in range(len(tokens))]
    merges_field = reader.fields["tokenizer.ggml.merges"]
    merges = [merges_field.contents(i) for i in range(len(merges_field.data))]
    return tokens, types, merges


def write(path, arch, vocab, shape_keys, tensors):
    tokens, types, merges = vocab
    w = gguf.GGUFWriter(path + ".part", arch)
    w.add_name("tern benchmark model")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    for key, value in shape_keys:
        getattr(w, key)(value)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(5)
    cache = {}
    for name, shape, kind, scale in tensors:
        key = (shape, kind, scale)
        if key not in cache:
            data = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
            if kind == "q4_0":
                cache[key] = (gguf.quants.quantize(data, Q.Q4_0), Q.Q4_0)
            else:
                cache[key] = (data + (1.0 if kind == "norm" else 0.0), None)
        array, raw = cache[key]
        if raw is None:
            w.add_tensor(name, array)
        else:
            w.add_tensor(name, array, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(path + ".part", path)
    print(f"wrote {path}")


def common_keys(n_embd, layers, heads, kv, head_dim, ff):
    return [("add_context_length", 4096), ("add_embedding_length", n_embd), ("add_block_count", layers),
            ("add_feed_forward_length", ff), ("add_head_count", heads), ("add_head_count_kv", kv),
            ("add_key_length", head_dim), ("add_value_length", head_dim), ("add_rope_dimension_count", head_dim),
            ("add_layer_norm_rms_eps", 1e-5)]


def attention(p, n_embd, heads, kv, head_dim):
    return [(p + "attn_norm.weight", (n_embd,), "norm", 0.05),
            (p + "attn_q.weight", (heads * head_dim, n_embd), "q4_0", 0.02),
            (p + "attn_k.weight", (kv * head_dim, n_embd), "q4_0", 0.02),
            (p + "attn_v.weight", (kv * head_dim, n_embd), "q4_0", 0.02),
            (p + "attn_output.weight", (n_embd, heads * head_dim), "q4_0", 0.02),
            (p + "ffn_norm.weight", (n_embd,), "norm", 0.05)]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    vocab = full_vocabulary(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n_vocab = len(vocab[0])

    n_embd, layers, heads, kv, head_dim, ff = 2048, 16, 32, 8, 64, 8192
    # rope_freqs: ones ("norm" of scale 0) cost what Llama 3.2's own divisors (1 to 8) do.
    tensors = [("token_embd.weight", (n_vocab, n_embd), "q4_0", 0.5), ("rope_freqs.weight", (head_dim // 2,), "norm", 0.0)]
    for i in range(layers):
        p = f"blk.{i}."
        tensors += attention(p, n_embd, heads, kv, head_dim)
        tensors += [(p + "ffn_gate.weight", (ff, n_embd), "q4_0", 0.02), (p + "ffn_up.weight", (ff, n_embd), "q4_0", 0.02),
                    (p + "ffn_down.weight", (n_embd, ff), "q4_0", 0.01)]
    tensors.append(("output_norm.weight", (n_embd,), "norm", 0.05))
    write(os.path.join(out, "llama3-1b-bench.gguf"), "llama", vocab,
          common_keys(n_embd, layers, heads, kv, head_dim, ff) + [("add_rope_freq_base", 500000.0)], tensors)

    n_embd, layers, heads, kv, head_dim, ff_exp, experts = 2048, 16, 16, 4, 128, 1536, 8
    tensors = [("token_embd.weight", (n_vocab, n_embd), "q4_0", 0.5)]
    for i in range(layers):
        p = f"blk.{i}."
        tensors += attention(p, n_embd, heads, kv, head_dim)
        tensors += [(p + "attn_q_norm.weight", (head_dim,), "norm", 0.05), (p + "attn_k_norm.weight", (head_dim,), "norm", 0.05),
                    (p + "ffn_gate_inp.weight", (experts, n_embd), "f32", 0.05),
                    (p + "ffn_gate_exps.weight", (experts, ff_exp, n_embd), "q4_0", 0.02),
                    (p + "ffn_up_exps.weight", (experts, ff_exp, n_embd), "q4_0", 0.02),
                    (p + "ffn_down_exps.weight", (experts, n_embd, ff_exp), "q4_0", 0.01)]
    tensors += [("output_norm.weight", (n_embd,), "norm", 0.05), ("output.weight", (n_vocab, n_embd), "q4_0", 0.02)]
    keys = common_keys(n_embd, layers, heads, kv, head_dim, ff_exp) + [
        ("add_rope_freq_base", 1000000.0), ("add_expert_count", experts), ("add_expert_used_count", 2),
        ("add_expert_feed_forward_length", ff_exp)]
    write(os.path.join(out, "moe-8x2-bench.gguf"), "qwen3moe", vocab, keys, tensors)


if __name__ == "__main__":
    main()
