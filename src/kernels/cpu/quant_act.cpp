#include "kernels/cpu/quant_act.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/vector_ops.h"
#include "tensor/half.h"

namespace tern::kernels {

size_t act_row_bytes(ActFormat format, int64_t k) {
  switch (format) {
    case ActFormat::F32: return static_cast<size_t>(k) * 4;
    case ActFormat::Q8: return static_cast<size_t>(k / 32) * sizeof(ActQ8);
    case ActFormat::Q8K: return static_cast<size_t>(k / 256) * sizeof(ActQ8K);
  }
  return 0;
}

void quantize_q8_reference(const float* x, ActQ8* blocks, int64_t k) {
  for (int64_t b = 0; b < k / 32; ++b, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float inverse = amax != 0 ? 127.0f / amax : 0.0f;  // as llama.cpp's x86 code computes it
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(x[j] * inverse));
      blocks[b].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    blocks[b].d = float_to_f16(d);
    blocks[b].sum = static_cast<int16_t>(sum);
    blocks[b].s = float_to_f16(d * static_cast<float>(sum));
  }
}

void quantize_act_row(ActFormat format, const float* x, void* out, int64_t k) {
  if (format == ActFormat::F32) {
    std::memcpy(out, x, static_cast<size_t>(k) * 4);
    return;
  }
  if (format == ActFormat::Q8) {
    vector_ops().quantize_q8(x, static_cast<ActQ8*>(out), k);
    return;
  }
  vector_ops().quantize_q8k(x, static_cast<ActQ8K*>(out), k);
}

void quantize_q8k_reference(const float* x, ActQ8K* blocks, int64_t k) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    // Like ggml's Q8_K: scale by the signed value of largest magnitude, so it maps to -127 exactly.
    float max = 0, amax = 0;
    for (int j = 0; j < 256; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    ActQ8K& block = blocks[b];
    if (amax == 0) {
      std::memset(&block, 0, sizeof(block));
      continue;
    }
    const float inverse_scale = -127.0f / max;
    for (int j = 0; j < 256; ++j) {
      const int q = static_cast<int>(std::nearbyint(inverse_scale * x[j]));
      block.qs[j] = static_cast<int8_t>(std::min(127, q));
    }
    for (int s = 0; s < 16; ++s) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += block.qs[16 * s + j];
      block.bsums[s] = static_cast<int16_t>(sum);
    }
    block.d = 1.0f / inverse_scale;
  }
}

}  // namespace tern::kernels
