#include "kernels/cpu/lora.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {

float LoraWeights::a_at(int64_t r, int64_t i) const {
  if (type == LoraWeightType::F16) return f16_to_float(static_cast<const uint16_t*>(a)[r * in + i]);
  return static_cast<const int8_t*>(a)[r * in + i] * a_scales[r * lora_q8_blocks(in) + i / kLoraQ8Block];
}

float LoraWeights::b_t_at(int64_t r, int64_t o) const {
  if (type == LoraWeightType::F16) return f16_to_float(static_cast<const uint16_t*>(b_t)[r * out + o]);
  return static_cast<const int8_t*>(b_t)[r * out + o] * b_scales[r * lora_q8_blocks(out) + o / kLoraQ8Block];
}

void quantize_lora_q8(const float* values, int64_t rows, int64_t length, int8_t* q, float* scales) {
  const int64_t blocks = lora_q8_blocks(length);
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * kLoraQ8Block, end = std::min(length, begin + kLoraQ8Block);
      float largest = 0;
      for (int64_t i = begin; i < end; ++i) largest = std::max(largest, std::fabs(values[row * length + i]));
      const float scale = largest / 127.0f;
      scales[row * blocks + b] = scale;
      for (int64_t i = begin; i < end; ++i) {
        const float v = scale == 0 ? 0.0f : std::nearbyint(values[row * length + i] / scale);
        q[row * length + i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
      }
    }
  }
}

namespace {

// The scalar kernels read weights through a_at / b_t_at: each value is the same float the SIMD kernels
// compute (q x scale, or the F16 value), summed in another order.
void scalar_shrink(const LoraWeights& w, const float* x, int64_t x_stride, int64_t m, float* shrunk) {
  for (int64_t j = 0; j < m; ++j) {
    for (int64_t r = 0; r < w.rank; ++r) {
      float sum = 0;
      for (int64_t i = 0; i < w.in; ++i) sum += x[j * x_stride + i] * w.a_at(r, i);
      shrunk[j * w.rank + r] = w.scale * sum;
    }
  }
}

void scalar_expand(const LoraWeights& w, const float* shrunk, int64_t m, float* y, int64_t y_stride) {
  for (int64_t j = 0; j < m; ++j) {
    for (int64_t r = 0; r < w.rank; ++r) {
      const float s = shrunk[j * w.rank + r];
      for (int64_t o = 0; o < w.out; ++o) y[j * y_stride + o] += s * w.b_t_at(r, o);
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
    for (int64_t i = 0; i < w.in; ++i) sum += static_cast<double>(x[i]) * w.a_at(r, i);
    shrunk[static_cast<size_t>(r)] = sum;
  }
  for (int64_t j = 0; j < w.out; ++j) {
    double sum = 0;
    for (int64_t r = 0; r < w.rank; ++r) sum += shrunk[static_cast<size_t>(r)] * w.b_t_at(r, j);
    y[j] = static_cast<float>(y[j] + w.scale * sum);
  }
}

}  // namespace tern::kernels
