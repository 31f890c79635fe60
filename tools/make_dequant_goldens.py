#!/usr/bin/env python3
"""Makes the dequantization goldens that tests/tensor/dequantize_test.cpp checks tern against.

The reference is the `gguf` Python package (numpy code independent of ggml's C and of ours):
  - random_blocks.json: for every supported type, random blocks (scales forced to finite halves) and
    their dequantized float32 values, as hex bit patterns so the comparison is bit-exact;
  - model_tensors.json: for every tensor of each real model, the SHA-256 of its dequantized float32
    little-endian bytes;
  - type_sizes.json: block size and bytes per block of every type the package knows.

Usage (dev venv): .venv/bin/python tools/make_dequant_goldens.py MODEL.gguf [MODEL.gguf ...]
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "dequant")
SEED = 20261127
NUM_BLOCKS = 5  # an odd count, so no kernel can assume pairs

# Byte offsets of the half-precision scale fields inside each block type.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
TYPES = [T.F32, T.F16, T.BF16, *HALF_FIELDS.keys()]


def random_blocks(rng, qtype):
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        values = rng.standard_normal(NUM_BLOCKS * 7).astype(np.float32)
        return values.tobytes(), len(values)
    if qtype in (T.F16, T.BF16):
        bits = rng.integers(0, 1 << 16, size=NUM_BLOCKS * 7, dtype=np.uint16)
        exponent_mask = 0x7C00 if qtype == T.F16 else 0x7F80
        mantissa_mask = 0x03FF if qtype == T.F16 else 0x007F
        nan = ((bits & exponent_mask) == exponent_mask) & ((bits & mantissa_mask) != 0)
        bits[nan] &= ~np.uint16(exponent_mask >> 1 & exponent_mask)  # turn NaNs into finite values
        return bits.tobytes(), len(bits)
    raw = bytearray(rng.integers(0, 256, size=NUM_BLOCKS * block_bytes, dtype=np.uint8).tobytes())
    for b in range(NUM_BLOCKS):
        for offset in HALF_FIELDS[qtype]:
            scale = np.float16(rng.standard_normal() * 0.02)
            at = b * block_bytes + offset
            raw[at:at + 2] = scale.tobytes()
    return bytes(raw), NUM_BLOCKS * block_size


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    cases = []
    for qtype in TYPES:
        data, count = random_blocks(rng, qtype)
        values = dequantize(np.frombuffer(data, dtype=np.uint8), qtype).astype(np.float32).reshape(-1)
        assert values.size == count, (qtype, values.size, count)
        cases.append({
            "type": qtype.name,
            "num_elements": count,
            "bytes_hex": data.hex(),
            "float_bits_hex": values.view(np.uint32).astype("<u4").tobytes().hex(),
        })
    with open(os.path.join(OUT, "random_blocks.json"), "w") as f:
        json.dump({"seed": SEED, "cases": cases}, f, indent=1)

    sizes = {t.name: {"id": int(t), "block_size": s[0], "block_bytes": s[1]}
             for t, s in gguf.GGML_QUANT_SIZES.items()}
    with open(os.path.join(OUT, "type_sizes.json"), "w") as f:
        json.dump(sizes, f, indent=1)

    models = {}
    for path in sys.argv[1:]:
        reader = gguf.GGUFReader(path)
        tensors = {}
        for tensor in reader.tensors:
            values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            tensors[tensor.name] = {
                "type": tensor.tensor_type.name,
                "num_elements": int(tensor.n_elements),
                "sha256": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
            }
        with open(path, "rb") as f:
            file_hash = hashlib.sha256(f.read()).hexdigest()
        models[os.path.basename(path)] = {"file_sha256": file_hash, "tensors": tensors}
        print(f"{path}: {len(tensors)} tensors", file=sys.stderr)
    if models:
        with open(os.path.join(OUT, "model_tensors.json"), "w") as f:
            json.dump(models, f, indent=1)


if __name__ == "__main__":
    main()
