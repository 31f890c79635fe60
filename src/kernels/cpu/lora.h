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

#include <cstdint>

namespace tern::kernels {

struct LoraWeights {
  const uint16_t* a = nullptr;    ///< [rank][in], F16
  const uint16_t* b_t = nullptr;  ///< [rank][out], F16 (B transposed)
  int64_t rank = 0, in = 0, out = 0;
  float scale = 1.0f;
};

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
