#!/usr/bin/env python3
"""Writes a small random-weight qwen2 GGUF: the fixture that checks tern's qwen2 path (QKV biases,
NeoX RoPE, untied output, F16 and Q8_0 weights) against llama.cpp, since no real Qwen model ships
through our package registries. Deterministic for a given seed and gguf/numpy version.

Its tokenizer is the first 512 tokens of SmolLM2's vocabulary (and the merges among them), with the
qwen2 pre-tokenizer; tests feed token ids directly.

Usage: python tools/make_random_qwen2.py SMOLLM2.gguf OUT.gguf
"""
import sys

import numpy as np
import gguf

from make_random_models import VOCAB, vocabulary

N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF, N_LAYER = 256, 4, 2, 64, 512, 2
SEED = 2026


def main():
    source, out = sys.argv[1], sys.argv[2]
    tokens, types, merges = vocabulary(source)  # SmolLM2's first VOCAB tokens and the merges among them

    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(out, "qwen2")
    w.add_name("tern random qwen2 fixture")
    w.add_context_length(1024)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    def tensor(name, shape, kind, scale):
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        if kind == "q8_0":
            w.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif kind == "f16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, data)

    tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        tensor(p + "attn_norm.weight", (N_EMBD,), "f32", 0.1)
        tensor(p + "attn_q.weight", (N_HEAD * HEAD_DIM, N_EMBD), "q8_0", 0.06)
        tensor(p + "attn_q.bias", (N_HEAD * HEAD_DIM,), "f32", 0.1)
        tensor(p + "attn_k.weight", (N_KV * HEAD_DIM, N_EMBD), "f16", 0.06)
        tensor(p + "attn_k.bias", (N_KV * HEAD_DIM,), "f32", 0.1)
        tensor(p + "attn_v.weight", (N_KV * HEAD_DIM, N_EMBD), "q8_0", 0.06)
        tensor(p + "attn_v.bias", (N_KV * HEAD_DIM,), "f32", 0.1)
        tensor(p + "attn_output.weight", (N_EMBD, N_HEAD * HEAD_DIM), "q8_0", 0.06)
        tensor(p + "ffn_norm.weight", (N_EMBD,), "f32", 0.1)
        tensor(p + "ffn_gate.weight", (N_FF, N_EMBD), "q8_0", 0.06)
        tensor(p + "ffn_up.weight", (N_FF, N_EMBD), "f16", 0.06)
        tensor(p + "ffn_down.weight", (N_EMBD, N_FF), "q8_0", 0.04)
    tensor("output_norm.weight", (N_EMBD,), "f32", 0.1)
    tensor("output.weight", (VOCAB, N_EMBD), "q8_0", 0.06)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
