#pragma once
// The LoRA update of a group of activation rows that share one adapter: y_j += scale · B (A x_j).
// Two steps, each one pass over its weights for a block of rows (so a prompt chunk of one adapter reads
// A and B once per block, and the F16 -> F32 conversion is shared by the block). A row's result never
// depends on the other rows of its block or batch (tested), so a request's tokens do not either:
//   shrink:  s_j[r] = scale · A_r · x_j      A is [rank][in]: rank dot products of length `in`
//   expand:  y_j   += sum_r s_j[r] · Bt_r     B is kept transposed, [rank][out]: rank axpys of length `out`
// The scale goes on the `rank` shrunk values, not on the `out` outputs. Implementations: the scalar
// one (portable), AVX2 + FMA + F16C (lora_avx2.cpp), chosen at run time; the reference below is the
// plain formula in double precision that tests/kernels/lora_kernel_test.cpp checks both against.
//
// Weights are F16, or Q8: int8 values in blocks of kLoraQ8Block along a row (A's `in`, Bt's `out`),
// each block with an F32 scale (value = q x scale), as llama.cpp's Q8_0 but with an F32 scale and a
// short last block. Q8 takes 55 % of F16's memory. The activations stay F32 either way (the kernels
// convert the weights, once per block of rows), so Q8's only difference from F16 is its values'
// rounding.

#include <cstdint>

namespace tern::kernels {

enum class LoraWeightType : uint8_t { F16, Q8 };
inline constexpr int64_t kLoraQ8Block = 32;
/// Scales per row of `length` Q8 values.
inline int64_t lora_q8_blocks(int64_t length) { return (length + kLoraQ8Block - 1) / kLoraQ8Block; }

struct LoraWeights {
  LoraWeightType type = LoraWeightType::F16;
  const void* a = nullptr;    ///< [rank][in]: uint16_t (F16) or int8_t (Q8)
  const void* b_t = nullptr;  ///< [rank][out] (B transposed), of the same type
  const float* a_scales = nullptr;  ///< Q8: [rank][lora_q8_blocks(in)]
  const float* b_scales = nullptr;  ///< Q8: [rank][lora_q8_blocks(out)]
  int64_t rank = 0, in = 0, out = 0;
  float scale = 1.0f;

  /// Element i of row r of A / of Bt as the kernels use it (the reference reads weights through these).
  float a_at(int64_t r, int64_t i) const;
  float b_t_at(int64_t r, int64_t o) const;
};

/// Q8 of `rows` rows of `length` floats: q[row][i] and scales[row][block], value ~ q x scale with
/// scale = max |value in the block| / 127, so each value is off by at most half a step, scale / 2.
void quantize_lora_q8(const float* values, int64_t rows, int64_t length, int8_t* q, float* scales);

struct LoraKernels {
  /// shrunk[j * rank + r] = scale · A_r · x_j for the m rows x_j = x + j * x_stride.
  void (*shrink)(const LoraWeights& w, const float* x, int64_t x_stride, int64_t m, float* shrunk);
  /// y_j += sum_r shrunk[j * rank + r] · Bt_r for the m rows y_j = y + j * y_stride.
  void (*expand)(const LoraWeights& w, const float* shrunk, int64_t m, float* y, int64_t y_stride);
};

/// The best implementation for this machine (TERN_ISA caps it, as for every kernel).
const LoraKernels& lora_kernels();
const LoraKernels& scalar_lora_kernels();
const LoraKernels& avx2_lora_kernels();

/// y_j += scale · B (A x_j) for m rows; `shrunk` holds m * rank floats of scratch.
void lora_add_rows(const LoraKernels& kernels, const LoraWeights& w, const float* x, int64_t x_stride, float* y,
                   int64_t y_stride, int64_t m, float* shrunk);

/// The same for one row in double precision, element by element: the reference.
void lora_add_row_reference(const LoraWeights& w, const float* x, float* y);

}  // namespace tern::kernels
