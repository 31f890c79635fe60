#include "kernels/cpu/lora.h"

#include <vector>

#include "tensor/half.h"

namespace tern::kernels {

void lora_add_row(const VectorOps& ops, const LoraWeights& w, const float* x, float* y, float* shrunk) {
  // The scale goes on the `rank` shrunk values, not on the `out` outputs.
  for (int64_t r = 0; r < w.rank; ++r) shrunk[r] = w.scale * ops.dot_f32_f16(w.in, x, w.a + r * w.in);
  for (int64_t r = 0; r < w.rank; ++r) ops.axpy_f16(w.out, shrunk[r], w.b_t + r * w.out, y);
}

void lora_add_row_reference(const LoraWeights& w, const float* x, float* y) {
  std::vector<double> shrunk(static_cast<size_t>(w.rank));
  for (int64_t r = 0; r < w.rank; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < w.in; ++i) sum += static_cast<double>(x[i]) * f16_to_float(w.a[r * w.in + i]);
    shrunk[static_cast<size_t>(r)] = sum;
  }
  for (int64_t j = 0; j < w.out; ++j) {
    double sum = 0;
    for (int64_t r = 0; r < w.rank; ++r) sum += shrunk[static_cast<size_t>(r)] * f16_to_float(w.b_t[r * w.out + j]);
    y[j] = static_cast<float>(y[j] + w.scale * sum);
  }
}

}  // namespace tern::kernels
