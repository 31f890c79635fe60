#!/usr/bin/env python3
"""Makes the LoRA goldens that tests/model/lora_golden_test.cpp checks tern against: llama.cpp
(llama-cpp-python, CPU, F16 KV cache) running a base model with a LoRA adapter made by
tools/make_lora_adapters.py (the same files scripts/test.sh makes as fixtures).

For each (model, adapter) pair and each prompt: the prompt's token ids, llama.cpp's 64 largest
last-position logits with the adapter, and its 16-token greedy continuation. The base model's and the
adapter's SHA-256 are recorded, so a test against a drifted fixture fails with a clear message.

Usage: .venv/bin/python tools/make_lora_goldens.py NAME=MODEL.gguf:ADAPTER.gguf [...]
  e.g. smollm2-135m-r16=$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf:$TERN_HOME/fixtures/lora/smollm2-r16.gguf
"""
import hashlib
import json
import os
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "lora")
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Q: What is 17 times 23?\nA:",
    "The mitochondria is the powerhouse of",
    "List of prime numbers: 2, 3, 5, 7, 11,",
]
STEPS = 16
TOP = 64


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def last_logits(llm):
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float32)


def run(name, model, adapter):
    llm = Llama(model_path=model, lora_path=adapter, lora_scale=1.0, n_ctx=512, n_batch=512, n_threads=2,
                n_threads_batch=2, logits_all=False, verbose=False)
    random_vocab = "qwen2-random" in name
    rng = np.random.default_rng(5)
    cases = []
    for index, prompt in enumerate(PROMPTS):
        if random_vocab:
            tokens = [int(t) for t in rng.integers(3, llm.n_vocab(), size=6 + 5 * index)]
        else:
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(tokens)
        logits = last_logits(llm)
        top = np.argsort(-logits, kind="stable")[:TOP]
        greedy = []
        for _ in range(STEPS):
            token = int(np.argmax(last_logits(llm)))
            greedy.append(token)
            llm.eval([token])
        cases.append({"tokens": tokens, "top_ids": [int(t) for t in top], "top_logits": [float(logits[t]) for t in top],
                      "greedy": greedy})
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump({"model": os.path.basename(model), "model_sha256": sha256(model), "adapter": os.path.basename(adapter),
                   "adapter_sha256": sha256(adapter), "cases": cases}, f)
    print(f"{name}: {len(cases)} prompts", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    for arg in sys.argv[1:]:
        name, paths = arg.split("=", 1)
        model, adapter = paths.rsplit(":", 1)
        run(name, model, adapter)


if __name__ == "__main__":
    main()
