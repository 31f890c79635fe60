#include "kernels/cpu/lora.h"

#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

void scalar_shrink(const LoraWeights& w, const float* x, int64_t x_stride, int64_t m, float* shrunk) {
  for (int64_t j = 0; j < m; ++j) {
    for (int64_t r = 0; r < w.rank; ++r) {
      float sum = 0;
      for (int64_t i = 0; i < w.in; ++i) sum += x[j * x_stride + i] * f16_to_float(w.a[r * w.in + i]);
      shrunk[j * w.rank + r] = w.scale * sum;
    }
  }
}

void scalar_expand(const LoraWeights& w, const float* shrunk, int64_t m, float* y, int64_t y_stride) {
  for (int64_t j = 0; j < m; ++j) {
    for (int64_t r = 0; r < w.rank; ++r) {
      const float s = shrunk[j * w.rank + r];
      for (int64_t o = 0; o < w.out; ++o) y[j * y_stride + o] += s * f16_to_float(w.b_t[r * w.out + o]);
    }
  }
}

}  // namespace

const LoraKernels& scalar_lora_kernels() {
  static const LoraKernels kernels{scalar_shrink, scalar_expand};
  return kernels;
}

const LoraKernels& lora_kernels() {
  static const LoraKernels& kernels = best_isa() == Isa::SCALAR ? scalar_lora_kernels() : avx2_lora_kernels();
  return kernels;
}

void lora_add_rows(const LoraKernels& kernels, const LoraWeights& w, const float* x, int64_t x_stride, float* y, int64_t y_stride,
                   int64_t m, float* shrunk) {
  kernels.shrink(w, x, x_stride, m, shrunk);
  kernels.expand(w, shrunk, m, y, y_stride);
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
