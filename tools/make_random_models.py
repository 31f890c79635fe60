#!/usr/bin/env python3
"""Writes small random-weight GGUFs of the architectures no real model of ours ships through the
package registries: the fixtures that hold tern's forward passes to llama.cpp's on the same files
(tests/model/forward_golden_test.cpp, goldens by tools/make_logit_goldens.py). Deterministic for a
given seed and gguf/numpy version (pinned in tools/requirements-tests.txt).

Each file has the tensors and the metadata keys llama.cpp's converter writes for the family, at small
sizes (n_embd 256, 4 heads, 2 or 3 layers), with quantized matrices (Q8_0, Q5_0, Q4_0) beside F16
and F32 ones:

  llama3-random    Llama 3.1+: rope_freqs (RoPE frequency divisors, here random in [1, 16] so every
                   position shows them), llama-bpe pre-tokenizer, tied output
  mixtral-random   llama with 8 experts, top-2 (normalised weights), untied output; the experts are
                   feed_forward_length wide (so are OLMoE's)
  qwen3-random     per-head RMSNorm of q and k, NeoX RoPE, head size 64 with n_embd 256 / 8 heads
  qwen3moe-random  qwen3 + 8 experts top-2 (normalised weights)
  qwen2moe-random  qwen2 (q/k/v biases) + 8 experts top-2 (softmax weights) + a sigmoid-gated shared expert
  olmoe-random     RMSNorm over the whole q and k, 8 experts top-2 (softmax weights)
  phi3-random      fused attn_qkv and ffn_up (gate; up) tensors, NeoX RoPE
  phi35-random     phi3 with Phi-3.5's LongRoPE: rope_factors_long / _short, rope.scaling.attn_factor
  gemma2-random    soft-capped attention scores and logits, every other layer local (window 24),
                   norms after each block, GELU, tied output
  qwen3-yarn-random  qwen3 with YaRN RoPE scaling as Qwen's long-context configs write it (factor 4,
                   original context 256: the goldens' prompts reach past it)

Their tokenizer is the first 512 tokens of SmolLM2's vocabulary (and the merges among them); tests
feed token ids directly.

Usage: python tools/make_random_models.py SMOLLM2.gguf OUT_DIR [NAME ...]   (default: all of them)
"""
import os
import sys

import gguf
import numpy as np

VOCAB = 512
N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF = 256, 4, 2, 64, 512
N_EXPERT, N_USED, N_FF_EXP, N_FF_SHEXP = 8, 2, 128, 256
SEED = 2027
Q = gguf.GGMLQuantizationType


class Writer:
    def __init__(self, path, arch, seed, vocabulary, pre):
        self.rng = np.random.default_rng(seed)
        self.w = gguf.GGUFWriter(path, arch)
        tokens, types, merges = vocabulary
        w = self.w
        w.add_name("tern random-weight fixture")  # not the family: llama.cpp keys special-token fixes on names
        w.add_context_length(1024)
        w.add_embedding_length(N_EMBD)
        w.add_feed_forward_length(N_FF)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_bos_token(False)

    def tensor(self, name, shape, kind, scale, offset=0.0):
        data = (self.rng.standard_normal(shape) * scale + offset).astype(np.float32)
        if kind in ("q8_0", "q5_0", "q4_0"):
            qtype = {"q8_0": Q.Q8_0, "q5_0": Q.Q5_0, "q4_0": Q.Q4_0}[kind]
            self.w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        elif kind == "f16":
            self.w.add_tensor(name, data.astype(np.float16))
        else:
            self.w.add_tensor(name, data)

    def close(self):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()


def attention(t, p, n_head, n_kv, bias=False):
    t.tensor(p + "attn_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
    t.tensor(p + "attn_q.weight", (n_head * HEAD_DIM, N_EMBD), "q8_0", 0.06)
    t.tensor(p + "attn_k.weight", (n_kv * HEAD_DIM, N_EMBD), "f16", 0.06)
    t.tensor(p + "attn_v.weight", (n_kv * HEAD_DIM, N_EMBD), "q5_0", 0.06)
    if bias:
        t.tensor(p + "attn_q.bias", (n_head * HEAD_DIM,), "f32", 0.1)
        t.tensor(p + "attn_k.bias", (n_kv * HEAD_DIM,), "f32", 0.1)
        t.tensor(p + "attn_v.bias", (n_kv * HEAD_DIM,), "f32", 0.1)
    t.tensor(p + "attn_output.weight", (N_EMBD, n_head * HEAD_DIM), "q8_0", 0.06)


def dense_ffn(t, p, kinds=("q8_0", "q4_0", "q8_0")):
    t.tensor(p + "ffn_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
    t.tensor(p + "ffn_gate.weight", (N_FF, N_EMBD), kinds[0], 0.06)
    t.tensor(p + "ffn_up.weight", (N_FF, N_EMBD), kinds[1], 0.06)
    t.tensor(p + "ffn_down.weight", (N_EMBD, N_FF), kinds[2], 0.04)


def experts(t, p, shared=False, n_ff=N_FF_EXP):
    t.tensor(p + "ffn_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
    t.tensor(p + "ffn_gate_inp.weight", (N_EXPERT, N_EMBD), "f32", 0.3)
    t.tensor(p + "ffn_gate_exps.weight", (N_EXPERT, n_ff, N_EMBD), "q8_0", 0.06)
    t.tensor(p + "ffn_up_exps.weight", (N_EXPERT, n_ff, N_EMBD), "q4_0", 0.06)
    t.tensor(p + "ffn_down_exps.weight", (N_EXPERT, N_EMBD, n_ff), "q8_0", 0.08)
    if shared:
        t.tensor(p + "ffn_gate_inp_shexp.weight", (N_EMBD,), "f32", 0.1)
        t.tensor(p + "ffn_gate_shexp.weight", (N_FF_SHEXP, N_EMBD), "q8_0", 0.06)
        t.tensor(p + "ffn_up_shexp.weight", (N_FF_SHEXP, N_EMBD), "f16", 0.06)
        t.tensor(p + "ffn_down_shexp.weight", (N_EMBD, N_FF_SHEXP), "q8_0", 0.04)


def output(t, tied):
    t.tensor("output_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
    if not tied:
        t.tensor("output.weight", (VOCAB, N_EMBD), "q8_0", 0.06)


def heads(t, n_head, n_kv, layers, rope_base):
    t.w.add_block_count(layers)
    t.w.add_head_count(n_head)
    t.w.add_head_count_kv(n_kv)
    t.w.add_key_length(HEAD_DIM)
    t.w.add_value_length(HEAD_DIM)
    t.w.add_rope_dimension_count(HEAD_DIM)
    t.w.add_rope_freq_base(rope_base)


def moe_keys(t, shared=False, expert_width=True):
    t.w.add_expert_count(N_EXPERT)
    t.w.add_expert_used_count(N_USED)
    if expert_width:  # llama (Mixtral) experts are feed_forward_length wide, without a key of their own
        t.w.add_expert_feed_forward_length(N_FF_EXP)
    if shared:
        t.w.add_expert_shared_feed_forward_length(N_FF_SHEXP)


def llama3(t):
    heads(t, N_HEAD, N_KV, 2, 500000.0)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    # One divisor per rotary pair, as llama.cpp's converter writes for rope_type "llama3" (there 1 for
    # the high frequencies, 8 for the low ones, a ramp between): random here, so that every position
    # and every pair depends on them.
    t.w.add_tensor("rope_freqs.weight", t.rng.uniform(1.0, 16.0, HEAD_DIM // 2).astype(np.float32))
    for i in range(2):
        attention(t, f"blk.{i}.", N_HEAD, N_KV)
        dense_ffn(t, f"blk.{i}.")
    output(t, tied=True)


def mixtral(t):
    heads(t, N_HEAD, N_KV, 2, 1000000.0)
    moe_keys(t, expert_width=False)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        attention(t, f"blk.{i}.", N_HEAD, N_KV)
        experts(t, f"blk.{i}.", n_ff=N_FF)
    output(t, tied=False)


def qwen3_attention(t, p):
    attention(t, p, 8, N_KV)  # 8 heads of 64: q is wider (512) than n_embd (256), as in Qwen3-0.6B
    t.tensor(p + "attn_q_norm.weight", (HEAD_DIM,), "f32", 0.1, 1.0)
    t.tensor(p + "attn_k_norm.weight", (HEAD_DIM,), "f32", 0.1, 1.0)


def qwen3(t):
    heads(t, 8, N_KV, 2, 1000000.0)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        qwen3_attention(t, f"blk.{i}.")
        dense_ffn(t, f"blk.{i}.", ("q8_0", "f16", "q5_0"))
    output(t, tied=False)


def qwen3_yarn(t):
    qwen3(t)
    t.w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    t.w.add_rope_scaling_factor(4.0)
    t.w.add_rope_scaling_orig_ctx_len(256)


def qwen3moe(t):
    heads(t, 8, N_KV, 2, 1000000.0)
    moe_keys(t)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        qwen3_attention(t, f"blk.{i}.")
        experts(t, f"blk.{i}.")
    output(t, tied=False)


def qwen2moe(t):
    heads(t, N_HEAD, N_KV, 2, 1000000.0)
    moe_keys(t, shared=True)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        attention(t, f"blk.{i}.", N_HEAD, N_KV, bias=True)
        experts(t, f"blk.{i}.", shared=True)
    output(t, tied=False)


def olmoe(t):
    heads(t, N_HEAD, N_HEAD, 2, 10000.0)  # OLMoE's k norm spans n_embd: no grouped KV heads
    moe_keys(t, expert_width=False)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        p = f"blk.{i}."
        attention(t, p, N_HEAD, N_HEAD)
        t.tensor(p + "attn_q_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
        t.tensor(p + "attn_k_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
        experts(t, p, n_ff=N_FF)
    output(t, tied=False)


def phi3(t, long_rope=False):
    heads(t, N_HEAD, N_HEAD, 2, 10000.0)
    t.w.add_sliding_window(2047)  # as Phi-3-mini-4k's converter writes it; llama.cpp ignores it
    if long_rope:
        # Phi-3.5's LongRoPE, in small: factors per rotary pair for contexts up to the original one
        # (short) and past it (long; the goldens' 512-token context is past 64), cos and sin scaled.
        t.w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)  # as convert_hf_to_gguf writes it
        t.w.add_rope_scaling_orig_ctx_len(64)
        t.w.add_rope_scaling_attn_factors(1.19)
        t.w.add_tensor("rope_factors_long.weight", t.rng.uniform(1.0, 16.0, HEAD_DIM // 2).astype(np.float32))
        t.w.add_tensor("rope_factors_short.weight", t.rng.uniform(1.0, 2.0, HEAD_DIM // 2).astype(np.float32))
    else:
        t.w.add_rope_scaling_orig_ctx_len(1024)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 1.0)
    for i in range(2):
        p = f"blk.{i}."
        t.tensor(p + "attn_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
        t.tensor(p + "attn_qkv.weight", (3 * N_EMBD, N_EMBD), "q8_0", 0.06)
        t.tensor(p + "attn_output.weight", (N_EMBD, N_EMBD), "q5_0", 0.06)
        t.tensor(p + "ffn_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
        t.tensor(p + "ffn_up.weight", (2 * N_FF, N_EMBD), "q8_0", 0.06)
        t.tensor(p + "ffn_down.weight", (N_EMBD, N_FF), "q4_0", 0.04)
    output(t, tied=False)


def gemma2(t):
    heads(t, N_HEAD, N_KV, 3, 10000.0)
    t.w.add_sliding_window(24)
    t.w.add_attn_logit_softcapping(3.0)   # Gemma 2 ships 50 and 30; small caps make them bite here
    t.w.add_final_logit_softcapping(4.0)
    t.tensor("token_embd.weight", (VOCAB, N_EMBD), "q8_0", 0.1)
    for i in range(3):
        p = f"blk.{i}."
        attention(t, p, N_HEAD, N_KV)
        t.tensor(p + "post_attention_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
        dense_ffn(t, p)
        t.tensor(p + "post_ffw_norm.weight", (N_EMBD,), "f32", 0.1, 1.0)
    output(t, tied=True)


MODELS = {
    "llama3-random": ("llama", "llama-bpe", llama3),
    "mixtral-random": ("llama", "llama-bpe", mixtral),
    "qwen3-random": ("qwen3", "qwen2", qwen3),
    "qwen3moe-random": ("qwen3moe", "qwen2", qwen3moe),
    "qwen2moe-random": ("qwen2moe", "qwen2", qwen2moe),
    "olmoe-random": ("olmoe", "default", olmoe),
    "phi3-random": ("phi3", "default", phi3),
    "gemma2-random": ("gemma2", "default", gemma2),
    "phi35-random": ("phi3", "default", lambda t: phi3(t, long_rope=True)),
    "qwen3-yarn-random": ("qwen3", "qwen2", qwen3_yarn),
}


def vocabulary(source):
    reader = gguf.GGUFReader(source)
    tokens = [reader.fields["tokenizer.ggml.tokens"].contents(i) for i in range(VOCAB)]
    types = [int(reader.fields["tokenizer.ggml.token_type"].contents(i)) for i in range(VOCAB)]
    kept = set(tokens)
    merges = []
    field = reader.fields["tokenizer.ggml.merges"]
    for i in range(len(field.data)):
        merge = field.contents(i)
        left, right = merge.split(" ", 1)
        if left in kept and right in kept and left + right in kept:
            merges.append(merge)
    return tokens, types, merges


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    source, out_dir, names = sys.argv[1], sys.argv[2], sys.argv[3:] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown fixture(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    vocab = vocabulary(source)
    os.makedirs(out_dir, exist_ok=True)
    for index, name in enumerate(MODELS):
        if name not in names:
            continue
        arch, pre, build = MODELS[name]
        path = os.path.join(out_dir, name + ".gguf")
        writer = Writer(path + ".part", arch, SEED + index, vocab, pre)
        build(writer)
        writer.close()
        os.replace(path + ".part", path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
