#!/usr/bin/env python3
"""llama.cpp against itself with a LoRA adapter: the spread that sets the tolerances of
tests/model/lora_golden_test.cpp. For each prompt of a LoRA golden file, llama.cpp's last-position
logits batched on 2 threads vs token by token on 1 thread; prints the max |difference| over the
golden's 64 largest logits and whether the top-1 agrees.

Usage: .venv/bin/python tools/lora_self_consistency.py MODEL.gguf ADAPTER.gguf tests/data/lora/NAME.json
"""
import json
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama
model, adapter, golden = sys.argv[1:4]
g = json.load(open(golden))
def logits(llm):
    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(p, shape=(llm.n_vocab(),)).astype(np.float32).copy()
a = Llama(model_path=model, lora_path=adapter, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2, verbose=False)
b = Llama(model_path=model, lora_path=adapter, n_ctx=512, n_batch=1, n_ubatch=1, n_threads=1, n_threads_batch=1, verbose=False)
for c in g["cases"]:
    t = c["tokens"]
    a.reset(); a.eval(t); la = logits(a)
    b.reset()
    for tok in t: b.eval([tok])
    lb = logits(b)
    ids = c["top_ids"]
    print("self max diff %.3f top1 same %s" % (np.max(np.abs(la[ids]-lb[ids])), np.argmax(la)==np.argmax(lb)))
