#include "tensor/dequantize.h"

#include <cstring>

#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace tern {
namespace {

// Each function decodes `num_blocks` consecutive blocks. The arithmetic order (for example
// d*scale first, then *q) is part of the definition: it is what makes results bit-exact with ggml.

template <class Block>
const Block* blocks_of(std::span<const uint8_t> in) {
  return reinterpret_cast<const Block*>(in.data());
}

template <class Block>
Block load_block(const uint8_t* at) {
  Block block;
  std::memcpy(&block, at, sizeof(Block));  // blocks in the file are not aligned
  return block;
}

void dequantize_q4_0(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i, y += kQK) {
    const auto b = load_block<BlockQ4_0>(in + i * sizeof(BlockQ4_0));
    const float d = f16_to_float(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i, y += kQK) {
    const auto b = load_block<BlockQ4_1>(in + i * sizeof(BlockQ4_1));
    const float d = f16_to_float(b.d);
    const float m = f16_to_float(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

// Q5_0 / Q5_1: the 5th bit of weight j comes from bit j of qh, that of weight j+16 from bit j+16.
template <class Block, bool kHasMin>
void dequantize_q5(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i, y += kQK) {
    const auto b = load_block<Block>(in + i * sizeof(Block));
    const float d = f16_to_float(b.d);
    uint32_t qh;
    std::memcpy(&qh, b.qh, sizeof(qh));
    for (int j = 0; j < kQK / 2; ++j) {
      const int high0 = ((qh >> j) << 4) & 0x10;
      const int high1 = (qh >> (j + 12)) & 0x10;
      const int q0 = (b.qs[j] & 0x0F) | high0;
      const int q1 = (b.qs[j] >> 4) | high1;
      if constexpr (kHasMin) {
        const float m = f16_to_float(b.m);
        y[j] = static_cast<float>(q0) * d + m;
        y[j + kQK / 2] = static_cast<float>(q1) * d + m;
      } else {
        y[j] = static_cast<float>(q0 - 16) * d;
        y[j + kQK / 2] = static_cast<float>(q1 - 16) * d;
      }
    }
  }
}

void dequantize_q8_0(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i, y += kQK) {
    const auto b = load_block<BlockQ8_0>(in + i * sizeof(BlockQ8_0));
    const float d = f16_to_float(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

// Q2_K: each 128-weight half reads 32 bytes of qs four times, 2 bits at a time (shift 0, 2, 4, 6);
// each pass covers two 16-weight sub-blocks (bytes 0-15 and 16-31).
void dequantize_q2_k(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i) {
    const auto b = load_block<BlockQ2_K>(in + i * sizeof(BlockQ2_K));
    const float d = f16_to_float(b.d);
    const float dmin = f16_to_float(b.dmin);
    const uint8_t* q = b.qs;
    int sub = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {
          const uint8_t scale = b.scales[sub++];
          const float dl = d * static_cast<float>(scale & 0xF);
          const float ml = dmin * static_cast<float>(scale >> 4);
          for (int l = 0; l < 16; ++l) {
            *y++ = dl * static_cast<float>((q[l + 16 * part] >> shift) & 3) - ml;
          }
        }
      }
    }
  }
}

// Q3_K: the 12 scale bytes hold sixteen 6-bit scales: low nibbles in bytes 0-7 (scales 0-7 in the low
// nibbles, 8-15 in the high), top 2 bits in bytes 8-11 (scale s uses bits 2*(s/4).. of byte 8 + s%4).
void unpack_q3_k_scales(const uint8_t* packed, int8_t* scales) {
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? (packed[s] & 0xF) : (packed[s - 8] >> 4);
    const int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
    scales[s] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

void dequantize_q3_k(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i) {
    const auto b = load_block<BlockQ3_K>(in + i * sizeof(BlockQ3_K));
    const float d = f16_to_float(b.d);
    int8_t scales[16];
    unpack_q3_k_scales(b.scales, scales);
    const uint8_t* q = b.qs;
    uint8_t mask = 1;
    int sub = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, mask <<= 1) {
        for (int part = 0; part < 2; ++part) {
          const float dl = d * static_cast<float>(scales[sub++]);
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            const int value = ((q[l] >> shift) & 3) - ((b.hmask[l] & mask) ? 0 : 4);
            *y++ = dl * static_cast<float>(value);
          }
        }
      }
    }
  }
}

// Q4_K / Q5_K: four 64-weight groups, each two 32-weight sub-blocks reading the low then the high
// nibbles of the same 32 bytes; Q5_K's 5th bit for group g comes from bits 2g and 2g+1 of qh.
template <class Block, bool kHasHighBit>
void dequantize_q45_k(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i) {
    const auto b = load_block<Block>(in + i * sizeof(Block));
    const float d = f16_to_float(b.d);
    const float dmin = f16_to_float(b.dmin);
    const uint8_t* q = b.qs;
    for (int group = 0; group < 4; ++group, q += 32) {
      for (int part = 0; part < 2; ++part) {
        uint8_t scale, min;
        scale_min_k4(2 * group + part, b.scales, &scale, &min);
        const float dl = d * static_cast<float>(scale);
        const float ml = dmin * static_cast<float>(min);
        for (int l = 0; l < 32; ++l) {
          int value = part == 0 ? (q[l] & 0xF) : (q[l] >> 4);
          if constexpr (kHasHighBit) {
            if (b.qh[l] & (1u << (2 * group + part))) value += 16;
          }
          *y++ = dl * static_cast<float>(value) - ml;
        }
      }
    }
  }
}

// Q6_K: each 128-weight half uses 64 bytes of ql and 32 of qh; weight l + 32k of the half takes the
// low/high nibble of ql[l] or ql[l+32] and bits 2k..2k+1 of qh[l].
void dequantize_q6_k(const uint8_t* in, size_t num_blocks, float* y) {
  for (size_t i = 0; i < num_blocks; ++i) {
    const auto b = load_block<BlockQ6_K>(in + i * sizeof(BlockQ6_K));
    const float d = f16_to_float(b.d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = b.ql + 64 * half;
      const uint8_t* qh = b.qh + 32 * half;
      const int8_t* sc = b.scales + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int sub = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[sub]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[sub + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[sub + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[sub + 6]) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

Result<void> dequantize(DType type, std::span<const uint8_t> in, std::span<float> out) {
  const DTypeInfo& info = dtype_info(type);
  if (!info.can_dequantize) return fail("no reference dequantization for tensor type {}", info.name);
  if (out.size() % info.block_size != 0) {
    return fail("{} elements of {} is not a whole number of {}-element blocks", out.size(), info.name,
                info.block_size);
  }
  if (in.size() != dtype_bytes(info, out.size())) {
    return fail("{} elements of {} need {} bytes, got {}", out.size(), info.name, dtype_bytes(info, out.size()),
                in.size());
  }
  const size_t num_blocks = out.size() / info.block_size;
  const uint8_t* src = in.data();
  float* dst = out.data();
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, in.size());
      break;
    case DType::F16:
    case DType::BF16:
      for (size_t i = 0; i < num_blocks; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = type == DType::F16 ? f16_to_float(bits) : bf16_to_float(bits);
      }
      break;
    case DType::Q4_0: dequantize_q4_0(src, num_blocks, dst); break;
    case DType::Q4_1: dequantize_q4_1(src, num_blocks, dst); break;
    case DType::Q5_0: dequantize_q5<BlockQ5_0, false>(src, num_blocks, dst); break;
    case DType::Q5_1: dequantize_q5<BlockQ5_1, true>(src, num_blocks, dst); break;
    case DType::Q8_0: dequantize_q8_0(src, num_blocks, dst); break;
    case DType::Q2_K: dequantize_q2_k(src, num_blocks, dst); break;
    case DType::Q3_K: dequantize_q3_k(src, num_blocks, dst); break;
    case DType::Q4_K: dequantize_q45_k<BlockQ4_K, false>(src, num_blocks, dst); break;
    case DType::Q5_K: dequantize_q45_k<BlockQ5_K, true>(src, num_blocks, dst); break;
    case DType::Q6_K: dequantize_q6_k(src, num_blocks, dst); break;
    default:
      return fail("no reference dequantization for tensor type {}", info.name);
  }
  return {};
}

}  // namespace tern
