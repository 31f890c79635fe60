#pragma once
// Byte layouts of ggml's quantized blocks, as stored in GGUF files. `d`, `dmin`, `m` are IEEE halfs.
// Within a block, weight i is reconstructed as below (q = the unsigned nibble / bit-field value).
//
// 32-weight blocks:
//   Q4_0  (18 B): d | qs[16]            w[j] = (qs[j] & 15) - 8, w[j+16] = (qs[j] >> 4) - 8, times d
//   Q4_1  (20 B): d | m | qs[16]        as Q4_0 without the -8, then d*q + m
//   Q5_0  (22 B): d | qh u32 | qs[16]   5th bit of w[j] is bit j of qh, of w[j+16] bit j+16; (q - 16) * d
//   Q5_1  (24 B): d | m | qh | qs[16]   as Q5_0 without the -16, then d*q + m
//   Q8_0  (34 B): d | qs int8[32]       w = d * qs
//
// 256-weight "K" super-blocks, made of sub-blocks with their own 4- to 8-bit scales:
//   Q2_K  (84 B): scales[16] | qs[64] | d | dmin
//         16 sub-blocks of 16; scales[s] = scale (low nibble) | min (high nibble);
//         2-bit q; w = d*scale*q - dmin*min
//   Q3_K (110 B): hmask[32] | qs[64] | scales[12] | d
//         16 sub-blocks of 16 with 6-bit signed scales (packed: low 4 bits in bytes 0-7, high 2 bits
//         in bytes 8-11), value = scale - 32; q = 2 low bits from qs, high bit from hmask, where a
//         clear hmask bit subtracts 4; w = d*(scale-32)*q
//   Q4_K (144 B): d | dmin | scales[12] | qs[128]
//         8 sub-blocks of 32 with 6-bit scale and 6-bit min (packed, see scale_min_k4); 4-bit q;
//         w = d*scale*q - dmin*min
//   Q5_K (176 B): d | dmin | scales[12] | qh[32] | qs[128]   as Q4_K with a 5th bit from qh
//   Q6_K (210 B): ql[128] | qh[64] | scales int8[16] | d
//         16 sub-blocks of 16 with int8 scales; 6-bit q = 4 low bits (ql) + 2 high bits (qh);
//         w = d*scale*(q - 32)
//
// The element order of every block type is described in the reference code in dequantize.cpp.

#include <cstdint>

namespace tern {

constexpr int kQK = 32;    // weights per classic block
constexpr int kQK_K = 256; // weights per K super-block
constexpr int kKScaleBytes = 12;

struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK / 2]; };
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[kQK / 2]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[kQK]; };
struct BlockQ2_K { uint8_t scales[kQK_K / 16]; uint8_t qs[kQK_K / 4]; uint16_t d; uint16_t dmin; };
struct BlockQ3_K { uint8_t hmask[kQK_K / 8]; uint8_t qs[kQK_K / 4]; uint8_t scales[kKScaleBytes]; uint16_t d; };
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[kKScaleBytes]; uint8_t qs[kQK_K / 2]; };
struct BlockQ5_K { uint16_t d; uint16_t dmin; uint8_t scales[kKScaleBytes]; uint8_t qh[kQK_K / 8]; uint8_t qs[kQK_K / 2]; };
struct BlockQ6_K { uint8_t ql[kQK_K / 2]; uint8_t qh[kQK_K / 4]; int8_t scales[kQK_K / 16]; uint16_t d; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

/// Unpacks the j-th 6-bit (scale, min) pair of a Q4_K / Q5_K block (j in 0..7): pairs 0-3 sit in the
/// low 6 bits of bytes 0-3 / 4-7; pairs 4-7 take 4 bits from bytes 8-11 and their top 2 bits from the
/// spare high bits of bytes 0-7.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace tern
