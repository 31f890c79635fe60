#pragma once
// Interleaved weight layout for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and Q4_K /
// Q6_K, used on machines with AVX2 or AVX-512 VNNI (the scalar path keeps the file layout). Eight consecutive weight rows form a group; block i of the group holds
// block i of each of the eight rows, rearranged so that one 256-bit vector carries four consecutive
// weights of all eight rows:
//
//   d[8] (f16) | m[8] (f16, Q4_1 / Q5_1 only) | qh (Q5 types only) | qs
//
//   qs, 4- and 5-bit types: 4 vectors of 32 bytes; byte 4*row + b of vector v holds weight 4v + b of
//       that row in its low nibble and weight 16 + 4v + b in its high nibble, so the low nibbles of
//       vector v are chunk v (weights 4v..4v+3) and the high nibbles chunk v + 4;
//   qh, Q5 types: 32 bytes, bit-sliced: bit c of byte 4*row + b is the 5th bit of weight 4c + b, so
//       the 5th bits of chunk c sit in the same bytes as its weights (a shift and a mask on AVX2, a
//       test-into-mask on AVX-512);
//   qs, Q8_0: 8 vectors of 32 bytes; byte 4*row + b of vector c is weight 4c + b.
//
// The K types keep their 256-value super-blocks, with the sub-block scales unpacked per row:
//
//   Q4_K (1248 B per super-block of 8 rows): d[8] | dmin[8] (f16) | scales u8[8 sub-blocks][8 rows]
//        | mins i16[4 pairs][8 rows][2] (sub-blocks 2t, 2t+1) | qs: 4 pairs of sub-blocks x 8
//        vectors; vector c of pair t holds chunk c of sub-block 2t in its low nibbles, of 2t+1 in
//        its high nibbles (bytes 4*row + b as above);
//   Q6_K (2192 B): d[8] (f16) | scales i8[16 sub-blocks][8 rows] | q u8[16 sub-blocks][4 chunks][32]:
//        the 6-bit values unpacked to bytes (Q6_K is 5 % of a Q4_K_M model; decoding 6-bit fields
//        would cost more than the 30 % more bytes).
//
// A dot product then runs with the rows in the vector lanes: each vpdpbusd multiplies four weights of
// eight rows by the same four activations (broadcast), so a block's sums for eight rows take eight
// instructions plus one conversion and one scaling for all eight, where the row-major layout needs a
// conversion and two scalings per row. The 32-value types take exactly the bytes of the eight file
// rows; a partial last group is padded with zero rows.

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace tern::kernels {

inline constexpr int kInterleaveRows = 8;

/// Whether `type` has an interleaved layout.
bool can_interleave(DType type);

/// Bytes of one group of 8 interleaved rows of `k` weights.
size_t interleaved_group_bytes(DType type, int64_t k);

/// Rearranges `num_rows` (1..8) file rows of `k` weights (`row_bytes` apart) into one group of
/// interleaved_group_bytes(type, k) bytes at `out`; missing rows become zeros.
void interleave_group(DType type, const uint8_t* rows, size_t row_bytes, int num_rows, int64_t k, uint8_t* out);

/// The inverse for one row: writes row `lane` (0..7) of an interleaved group back in the file's layout
/// (the bytes of one file row of `k` weights), e.g. to look up a token's row of a tied embedding.
void deinterleave_row(DType type, const uint8_t* group, int lane, int64_t k, uint8_t* row);

}  // namespace tern::kernels
