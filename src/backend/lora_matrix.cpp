// LoraMatrix's storage: the CPU kernels' layouts (kernels/cpu/lora.h), which a device backend would
// upload from.

#include <cstring>

#include "backend/backend.h"
#include "backend/cpu/cpu_lora.h"
#include "kernels/cpu/lora.h"
#include "tensor/half.h"

namespace tern::backend {
namespace {

void store_f16(std::span<const float> values, std::vector<uint8_t>& out) {
  out.resize(values.size() * sizeof(uint16_t));
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t half = float_to_f16(values[i]);
    std::memcpy(out.data() + i * sizeof half, &half, sizeof half);
  }
}

void store_q8(std::span<const float> values, int64_t rows, int64_t length, std::vector<uint8_t>& out, std::vector<float>& scales) {
  out.resize(values.size());
  scales.resize(static_cast<size_t>(rows * kernels::lora_q8_blocks(length)));
  kernels::quantize_lora_q8(values.data(), rows, length, reinterpret_cast<int8_t*>(out.data()), scales.data());
}

}  // namespace

void LoraMatrix::set_weights(LoraWeightType weight_type, std::span<const float> a_values, std::span<const float> b_t_values) {
  type = weight_type;
  a_scales.clear();
  b_scales.clear();
  if (type == LoraWeightType::F16) {
    store_f16(a_values, a);
    store_f16(b_t_values, b_t);
    return;
  }
  store_q8(a_values, rank, in, a, a_scales);
  store_q8(b_t_values, rank, out, b_t, b_scales);
}

kernels::LoraWeights cpu_lora_weights(const LoraMatrix& m) {
  const auto type = m.type == LoraWeightType::Q8 ? kernels::LoraWeightType::Q8 : kernels::LoraWeightType::F16;
  return {.type = type, .a = m.a.data(), .b_t = m.b_t.data(), .a_scales = m.a_scales.data(), .b_scales = m.b_scales.data(),
          .rank = m.rank, .in = m.in, .out = m.out, .scale = m.scale};
}

}  // namespace tern::backend
