#!/usr/bin/env python3
"""How much llama.cpp disagrees with itself: the yardstick for tern's forward-pass tolerances.

Runs each golden prompt through llama.cpp twice, (a) prompt as one batch on 2 threads (how the
goldens were made) and (b) token by token on 1 thread, then compares last-position logits and
64-token greedy continuations between (a) and (b).

Usage: .venv/bin/python tools/llama_self_consistency.py MODEL.gguf tests/data/logits/NAME.json
"""
import json
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama


def last(llm):
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float32).copy()


def greedy(llm, tokens, steps=64):
    llm.reset()
    llm.eval(tokens)
    out = []
    for _ in range(steps):
        token = int(np.argmax(last(llm)))
        out.append(token)
        llm.eval([token])
    return out


def main():
    path, golden_path = sys.argv[1], sys.argv[2]
    batched = Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, verbose=False)
    stepwise = Llama(model_path=path, n_ctx=512, n_threads=1, n_batch=1, n_ubatch=1, verbose=False)
    cases = json.load(open(golden_path))["cases"]
    worst, same_top1, identical = 0.0, 0, 0
    for case in cases:
        tokens = case["tokens"]
        batched.reset(); batched.eval(tokens); a = last(batched)
        stepwise.reset(); stepwise.eval(tokens); b = last(stepwise)
        top = np.argsort(-a)[:64]
        worst = max(worst, float(np.abs(a[top] - b[top]).max()))
        same_top1 += int(np.argmax(a) == np.argmax(b))
        identical += int(greedy(batched, tokens) == greedy(stepwise, tokens))
    print(f"{golden_path}: llama.cpp batched/2 threads vs token-by-token/1 thread: max |top-64 logit difference| "
          f"{worst:.4f}, top-1 equal {same_top1}/{len(cases)}, identical greedy continuations {identical}/{len(cases)}")


if __name__ == "__main__":
    main()
