#pragma once
// Tensor element types as numbered in GGUF files (ggml's type ids), with their block geometry.
//
// Quantized types store a row as consecutive blocks; a block holds `block_size` weights in
// `block_bytes` bytes, so a row of n weights takes n / block_size * block_bytes bytes (n must be a
// multiple of block_size). The byte layout of each block type is described in tensor/quant_blocks.h.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tern {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

/// Geometry and name of one element type.
struct DTypeInfo {
  DType type;
  std::string_view name;
  uint32_t block_size;   ///< weights per block (1 for plain types)
  uint32_t block_bytes;  ///< bytes per block
  bool can_dequantize;   ///< tern has a reference dequantization for it
};

/// Info for a GGUF type id, or nullopt for an id tern does not know (the file is then rejected).
std::optional<DTypeInfo> dtype_info(uint32_t type_id);

/// Info for a known type.
const DTypeInfo& dtype_info(DType type);

/// Bytes taken by `num_elements` weights of `type`; num_elements must be a multiple of the block size.
inline uint64_t dtype_bytes(const DTypeInfo& info, uint64_t num_elements) {
  return num_elements / info.block_size * info.block_bytes;
}

}  // namespace tern
