// Scalar reference kernels: the definition each SIMD kernel is tested against.

#include <cstring>
#include <vector>

#include "kernels/cpu/vec_dot.h"
#include "tensor/dequantize.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace tern::kernels {
namespace {

template <class Block>
Block load(const void* base, int64_t index) {
  Block block;
  std::memcpy(&block, static_cast<const uint8_t*>(base) + index * sizeof(Block), sizeof(Block));
  return block;
}

// Unpacks a 32-weight block to its integer values q (before offset or min) and reports the offset.
template <class Block>
void unpack32(const Block& b, int* q);

template <>
void unpack32(const BlockQ4_0& b, int* q) {
  for (int j = 0; j < 16; ++j) q[j] = b.qs[j] & 0xF, q[j + 16] = b.qs[j] >> 4;
}
template <>
void unpack32(const BlockQ4_1& b, int* q) {
  for (int j = 0; j < 16; ++j) q[j] = b.qs[j] & 0xF, q[j + 16] = b.qs[j] >> 4;
}
template <class Block>
void unpack32_q5(const Block& b, int* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = (b.qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    q[j + 16] = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
  }
}
template <>
void unpack32(const BlockQ5_0& b, int* q) { unpack32_q5(b, q); }
template <>
void unpack32(const BlockQ5_1& b, int* q) { unpack32_q5(b, q); }
template <>
void unpack32(const BlockQ8_0& b, int* q) {
  for (int j = 0; j < 32; ++j) q[j] = b.qs[j];
}

// value = d * (q - offset)            for Q4_0 (offset 8), Q5_0 (16), Q8_0 (0)
// value = d * q + m                   for Q4_1, Q5_1
template <class Block, int kOffset, bool kHasMin>
void dot_blocks32(int64_t k, const void* w, const void* act, size_t stride, int num_rows, float* out) {
  for (int r = 0; r < num_rows; ++r) {
    const auto* a = reinterpret_cast<const ActQ8*>(static_cast<const uint8_t*>(act) + r * stride);
    float total = 0;
    for (int64_t i = 0; i < k / 32; ++i) {
      const Block b = load<Block>(w, i);
      int q[32];
      unpack32(b, q);
      int sumi = 0;
      for (int j = 0; j < 32; ++j) sumi += q[j] * a[i].qs[j];
      const float da = f16_to_float(a[i].d);
      const float dw = f16_to_float(b.d);
      if constexpr (kHasMin) {
        total += dw * da * static_cast<float>(sumi) + f16_to_float(b.m) * f16_to_float(a[i].s);
      } else {
        total += dw * da * static_cast<float>(sumi - kOffset * a[i].sum);
      }
    }
    out[r] = total;
  }
}

template <bool kHasHighBit, class Block>
void dot_q45_k(int64_t k, const void* w, const void* act, size_t stride, int num_rows, float* out) {
  for (int r = 0; r < num_rows; ++r) {
    const auto* a = reinterpret_cast<const ActQ8K*>(static_cast<const uint8_t*>(act) + r * stride);
    float total = 0;
    for (int64_t i = 0; i < k / 256; ++i) {
      const Block b = load<Block>(w, i);
      int sumi = 0, summin = 0;
      for (int sub = 0; sub < 8; ++sub) {
        uint8_t scale, min;
        scale_min_k4(sub, b.scales, &scale, &min);
        const uint8_t* qs = b.qs + 32 * (sub / 2);
        int dot = 0;
        for (int l = 0; l < 32; ++l) {
          int q = (sub % 2 == 0) ? (qs[l] & 0xF) : (qs[l] >> 4);
          if constexpr (kHasHighBit) {
            if (b.qh[l] & (1u << sub)) q += 16;
          }
          dot += q * a[i].qs[32 * sub + l];
        }
        sumi += scale * dot;
        summin += min * (a[i].bsums[2 * sub] + a[i].bsums[2 * sub + 1]);
      }
      total += f16_to_float(b.d) * a[i].d * static_cast<float>(sumi) -
               f16_to_float(b.dmin) * a[i].d * static_cast<float>(summin);
    }
    out[r] = total;
  }
}

void dot_q6_k(int64_t k, const void* w, const void* act, size_t stride, int num_rows, float* out) {
  for (int r = 0; r < num_rows; ++r) {
    const auto* a = reinterpret_cast<const ActQ8K*>(static_cast<const uint8_t*>(act) + r * stride);
    float total = 0;
    for (int64_t i = 0; i < k / 256; ++i) {
      const BlockQ6_K b = load<BlockQ6_K>(w, i);
      int q[256];
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        int* y = q + 128 * half;
        for (int l = 0; l < 32; ++l) {
          y[l] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
          y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
          y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
          y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
      }
      int sumi = 0;
      for (int sub = 0; sub < 16; ++sub) {
        int dot = 0;
        for (int l = 0; l < 16; ++l) dot += q[16 * sub + l] * a[i].qs[16 * sub + l];
        sumi += b.scales[sub] * (dot - 32 * a[i].bsums[sub]);
      }
      total += f16_to_float(b.d) * a[i].d * static_cast<float>(sumi);
    }
    out[r] = total;
  }
}

// Any dequantizable type against F32 activations: decode the row, then a float dot product.
template <DType kType>
void dot_dequantized(int64_t k, const void* w, const void* act, size_t stride, int num_rows, float* out) {
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(k));
  const DTypeInfo& info = dtype_info(kType);
  (void)dequantize(kType, {static_cast<const uint8_t*>(w), dtype_bytes(info, static_cast<uint64_t>(k))}, row);
  for (int r = 0; r < num_rows; ++r) {
    const auto* a = reinterpret_cast<const float*>(static_cast<const uint8_t*>(act) + r * stride);
    float total = 0;
    for (int64_t j = 0; j < k; ++j) total += row[j] * a[j];
    out[r] = total;
  }
}

}  // namespace

VecDotKernel scalar_vec_dot(DType type) {
  const Isa isa = Isa::SCALAR;
  switch (type) {
    case DType::Q4_0: return {ActFormat::Q8, dot_blocks32<BlockQ4_0, 8, false>, isa};
    case DType::Q4_1: return {ActFormat::Q8, dot_blocks32<BlockQ4_1, 0, true>, isa};
    case DType::Q5_0: return {ActFormat::Q8, dot_blocks32<BlockQ5_0, 16, false>, isa};
    case DType::Q5_1: return {ActFormat::Q8, dot_blocks32<BlockQ5_1, 0, true>, isa};
    case DType::Q8_0: return {ActFormat::Q8, dot_blocks32<BlockQ8_0, 0, false>, isa};
    case DType::Q4_K: return {ActFormat::Q8K, dot_q45_k<false, BlockQ4_K>, isa};
    case DType::Q5_K: return {ActFormat::Q8K, dot_q45_k<true, BlockQ5_K>, isa};
    case DType::Q6_K: return {ActFormat::Q8K, dot_q6_k, isa};
    case DType::F32: return {ActFormat::F32, dot_dequantized<DType::F32>, isa};
    case DType::F16: return {ActFormat::F32, dot_dequantized<DType::F16>, isa};
    case DType::BF16: return {ActFormat::F32, dot_dequantized<DType::BF16>, isa};
    case DType::Q2_K: return {ActFormat::F32, dot_dequantized<DType::Q2_K>, isa};
    case DType::Q3_K: return {ActFormat::F32, dot_dequantized<DType::Q3_K>, isa};
    default: return {ActFormat::F32, nullptr, isa};
  }
}

VecDotKernel vec_dot_kernel(DType type, Isa isa) {
  switch (isa) {
    case Isa::AVX512_VNNI: return avx512_vec_dot(type);
    case Isa::AVX2: return avx2_vec_dot(type);
    case Isa::SCALAR: return scalar_vec_dot(type);
  }
  return scalar_vec_dot(type);
}

VecDotKernel vec_dot_kernel(DType type) {
  // Best available: the machine's ISA, then lower ones, then the scalar reference.
  const Isa best = best_isa();
  if (best == Isa::AVX512_VNNI) {
    if (auto kernel = avx512_vec_dot(type); kernel.fn != nullptr) return kernel;
  }
  if (best != Isa::SCALAR) {
    if (auto kernel = avx2_vec_dot(type); kernel.fn != nullptr) return kernel;
  }
  return scalar_vec_dot(type);
}

}  // namespace tern::kernels
