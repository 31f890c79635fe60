#!/usr/bin/env python3
"""Makes a target model for speculative decoding with a draft model out of the one real model family we
have at two sizes' worth of bytes: SmolLM2-135M-Instruct, whose shipped Q4_1 file is the draft, re-written
with every Q4_1 matrix at Q8_0 as the target (the same vocabulary, 1.5x the bytes per decoded token).

What the pair measures: the mechanism - a draft model's guesses verified by a target, the draft's cost
against the target's, the scheduler's choice of how far to guess - on real weights and real text. What it
does not: a real draft/target speed-up. The target's Q8_0 values are the draft's Q4_1 values re-quantized,
so the two agree far more often than a 1B draft agrees with an 8B target, and the draft costs about 2/3 of
the target per token where a real pair's draft costs 1/10 or less.

Every metadata key and every other tensor is copied unchanged. Deterministic (no randomness).

Usage: python tools/make_draft_target.py SmolLM2-135M-Instruct.Q4_1.gguf OUT.gguf
"""
import sys

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def copy_metadata(reader, writer):
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes the header and the architecture itself
        vtype = field.types[0]
        value = field.contents()
        if name == "general.file_type":
            value = int(gguf.LlamaFileType.MOSTLY_Q8_0)
        if name == "general.name":
            value = f"{value} (Q4_1 re-quantized to Q8_0: tern's speculative decoding target)"
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, vtype, sub_type=sub_type)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, out = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    copy_metadata(reader, writer)
    converted = 0
    for t in reader.tensors:
        if t.tensor_type == Q.Q4_1:
            values = gguf.quants.dequantize(t.data, Q.Q4_1)
            writer.add_tensor(t.name, gguf.quants.quantize(values, Q.Q8_0), raw_dtype=Q.Q8_0)
            converted += 1
        else:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{out}: {converted} Q4_1 matrices re-quantized to Q8_0, {len(reader.tensors) - converted} tensors copied")


if __name__ == "__main__":
    main()
