#pragma once
// Scalar reference dequantization: the definition of what each stored block means. Fast kernels are
// tested against these; these are tested bit for bit against the gguf Python package
// (tests/tensor/dequantize_test.cpp, goldens made by tools/make_dequant_goldens.py).

#include <cstdint>
#include <span>

#include "tensor/dtype.h"
#include "util/result.h"

namespace tern {

/// Writes `out.size()` floats decoded from `in`, which must hold exactly dtype_bytes(type, out.size())
/// bytes. An error for a type without a reference (see DTypeInfo::can_dequantize) or a size mismatch.
Result<void> dequantize(DType type, std::span<const uint8_t> in, std::span<float> out);

}  // namespace tern
