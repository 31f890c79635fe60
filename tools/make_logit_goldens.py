#!/usr/bin/env python3
"""Makes the forward-pass goldens that tests/model/forward_golden_test.cpp checks tern against:
llama.cpp (llama-cpp-python, CPU, F16 KV cache) on the same GGUF files.

For each prompt: the prompt's token ids (llama.cpp's tokenizer, BOS as the model asks), the 64
largest last-position logits (ids and values), and the 64-token greedy continuation (argmax at
every step, no stop tokens). For each step of that continuation also llama.cpp's 8 largest logits
(ids and values) at the step's position, from the same run: the test uses them to say how close a
call llama.cpp itself faced where tern's continuation takes the other branch.

Usage: .venv/bin/python tools/make_logit_goldens.py [--threads N] NAME=MODEL.gguf [...]
(--threads: llama.cpp's threads, default 2 as the goldens were made with; ggml gives each output row
to one thread, so 1 thread reproduces the same goldens bit for bit.)
(the random-weight fixtures, NAME=<arch>-random, made by tools/make_random_qwen2.py and
tools/make_random_models.py: their prompts are random token ids since their vocabulary is a fragment;
qwen2-random's are 5 + 3i tokens long, the others' 5 + 20i (up to 385), so that positions well past
the first few hundred, where RoPE details such as Llama 3's frequency factors and the local layers'
windows show, are covered.)
"""
import hashlib
import json
import os
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "logits")
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Q: What is 17 times 23?\nA:",
    "The three primary colors are",
    "<|im_start|>user\nWrite a haiku about autumn.<|im_end|>\n<|im_start|>assistant\n",
    "Translate to French: 'Good morning, how are you?'\n",
    "In 1969, Neil Armstrong",
    "import numpy as np\nx = np.arange(10)\nprint(",
    "The mitochondria is the powerhouse of",
    "Les chats sont des animaux",
    "List of prime numbers: 2, 3, 5, 7, 11,",
    "Dear hiring manager,\n\nI am writing to apply for",
    "SELECT name, COUNT(*) FROM orders GROUP BY",
    "The quick brown fox",
    "A recipe for pancakes:\n1.",
    "Water boils at a temperature of",
    "日本の首都は",
    "<start_of_turn>user\nWhat is machine learning?<end_of_turn>\n<start_of_turn>model\n",
    "The theory of relativity, developed by Albert Einstein, states that",
]
STEPS = 64
TOP = 64
STEP_TOP = 8


def last_logits(llm):
    # llama.cpp's own buffer for the last evaluated token (Llama.scores is only filled with logits_all).
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float32)


def top_of(logits, count):
    return np.argsort(-logits, kind="stable")[:count]


def run(name, path, threads):
    llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                logits_all=False, verbose=False)
    vocab = llm.n_vocab()
    cases = []
    rng = np.random.default_rng(11)
    for index, prompt in enumerate(PROMPTS):
        if name == "qwen2-random":
            tokens = [int(t) for t in rng.integers(3, vocab, size=5 + 3 * index)]
        elif name.endswith("-random"):
            tokens = [int(t) for t in rng.integers(3, vocab, size=5 + 20 * index)]
        else:
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(tokens)
        logits = last_logits(llm)
        top = top_of(logits, TOP)
        continuation, step_top_ids, step_top_logits = [], [], []
        for _ in range(STEPS):
            step_logits = last_logits(llm)
            token = int(np.argmax(step_logits))
            continuation.append(token)
            step_top = top_of(step_logits, STEP_TOP)
            step_top_ids.append([int(t) for t in step_top])
            step_top_logits.append([float(step_logits[t]) for t in step_top])
            llm.eval([token])
        cases.append({
            "prompt": prompt if not name.endswith("-random") else None,
            "tokens": tokens,
            "top_ids": [int(t) for t in top],
            "top_logits": [float(logits[t]) for t in top],
            "greedy": continuation,
            # greedy_top_ids[t] / greedy_top_logits[t]: llama.cpp's 8 largest logits where it chose greedy[t].
            "greedy_top_ids": step_top_ids,
            "greedy_top_logits": step_top_logits,
        })
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        with open(path, "rb") as model_file:
            file_hash = hashlib.sha256(model_file.read()).hexdigest()
        json.dump({"model": os.path.basename(path), "file_sha256": file_hash, "cases": cases}, f)
    print(f"{name}: {len(cases)} prompts", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    threads = 2
    if args[:1] == ["--threads"]:
        threads, args = int(args[1]), args[2:]
    for arg in args:
        name, path = arg.split("=", 1)
        run(name, path, threads)


if __name__ == "__main__":
    main()
