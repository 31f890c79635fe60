#include "kernels/cpu/interleave.h"

#include <cstring>

#include "tensor/quant_blocks.h"

namespace tern::kernels {
namespace {

struct BlockShape {
  int bits = 0;          // 4, 5 or 8; 0: no interleaved layout
  bool has_min = false;  // Q4_1, Q5_1
  size_t qh_offset = 0;  // in the file block (Q5 types)
  size_t qs_offset = 0;  // in the file block
  size_t block_bytes = 0;
};

BlockShape shape_of(DType type) {
  switch (type) {
    case DType::Q4_0: return {4, false, 0, 2, sizeof(BlockQ4_0)};
    case DType::Q4_1: return {4, true, 0, 4, sizeof(BlockQ4_1)};
    case DType::Q5_0: return {5, false, 2, 6, sizeof(BlockQ5_0)};
    case DType::Q5_1: return {5, true, 4, 8, sizeof(BlockQ5_1)};
    case DType::Q8_0: return {8, false, 0, 2, sizeof(BlockQ8_0)};
    default: return {};
  }
}

// Weight j's code in a file block: the nibble with its 5th bit, or the int8 byte.
void block_codes(const BlockShape& s, const uint8_t* block, uint8_t codes[kQK]) {
  if (s.bits == 8) {
    std::memcpy(codes, block + s.qs_offset, kQK);
    return;
  }
  uint32_t qh = 0;
  if (s.bits == 5) std::memcpy(&qh, block + s.qh_offset, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    const uint8_t byte = block[s.qs_offset + j];
    codes[j] = static_cast<uint8_t>((byte & 0x0F) | (((qh >> j) & 1) << 4));
    codes[j + 16] = static_cast<uint8_t>((byte >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

constexpr size_t kQ4KGroupBlock = 16 + 16 + 64 + 128 + 1024;
constexpr size_t kQ6KGroupBlock = 16 + 128 + 2048;
static_assert(kQ4KGroupBlock == 1248 && kQ6KGroupBlock == 2192);

void interleave_q4_k(const uint8_t* rows, size_t row_bytes, int num_rows, int64_t k, uint8_t* out) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    uint8_t* group = out + i * kQ4KGroupBlock;
    uint8_t* scales = group + 32;
    auto* mins = reinterpret_cast<int16_t*>(group + 96);
    uint8_t* qs = group + 224;
    for (int row = 0; row < num_rows; ++row) {
      BlockQ4_K b;
      std::memcpy(&b, rows + row * row_bytes + i * sizeof(BlockQ4_K), sizeof(b));
      std::memcpy(group + 2 * row, &b.d, 2);
      std::memcpy(group + 16 + 2 * row, &b.dmin, 2);
      for (int j = 0; j < 8; ++j) {
        uint8_t scale, min;
        scale_min_k4(j, b.scales, &scale, &min);
        scales[8 * j + row] = scale;
        mins[(j / 2) * 16 + 2 * row + j % 2] = min;
      }
      // Weight l of sub-block 2t (2t + 1) is the low (high) nibble of qs[32t + l]: the bytes move
      // whole, to chunk l / 4 of pair t.
      for (int t = 0; t < 4; ++t) {
        for (int l = 0; l < 32; ++l) qs[256 * t + 32 * (l / 4) + 4 * row + l % 4] = b.qs[32 * t + l];
      }
    }
  }
}

void interleave_q6_k(const uint8_t* rows, size_t row_bytes, int num_rows, int64_t k, uint8_t* out) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    uint8_t* group = out + i * kQ6KGroupBlock;
    auto* scales = reinterpret_cast<int8_t*>(group + 16);
    uint8_t* q = group + 144;
    for (int row = 0; row < num_rows; ++row) {
      BlockQ6_K b;
      std::memcpy(&b, rows + row * row_bytes + i * sizeof(BlockQ6_K), sizeof(b));
      std::memcpy(group + 2 * row, &b.d, 2);
      for (int s = 0; s < 16; ++s) scales[8 * s + row] = b.scales[s];
      // Weight 128h + 32t + l: low 4 bits from ql (byte l or l + 32 of the half, low or high nibble),
      // high 2 bits from bits 2t of qh[32h + l] (see dequantize.cpp).
      for (int h = 0; h < 2; ++h) {
        for (int t = 0; t < 4; ++t) {
          for (int l = 0; l < 32; ++l) {
            const uint8_t low_byte = b.ql[64 * h + l + (t % 2) * 32];
            const int low = t < 2 ? (low_byte & 0x0F) : (low_byte >> 4);
            const int high = (b.qh[32 * h + l] >> (2 * t)) & 3;
            const int w = 128 * h + 32 * t + l;
            const int sub = w / 16, chunk = (w % 16) / 4, lane_byte = 4 * row + w % 4;
            q[128 * sub + 32 * chunk + lane_byte] = static_cast<uint8_t>(low | (high << 4));
          }
        }
      }
    }
  }
}

}  // namespace

bool can_interleave(DType type) { return shape_of(type).bits != 0 || type == DType::Q4_K || type == DType::Q6_K; }

size_t interleaved_group_bytes(DType type, int64_t k) {
  if (type == DType::Q4_K) return kQ4KGroupBlock * static_cast<size_t>(k / kQK_K);
  if (type == DType::Q6_K) return kQ6KGroupBlock * static_cast<size_t>(k / kQK_K);
  return kInterleaveRows * shape_of(type).block_bytes * static_cast<size_t>(k / kQK);
}

void interleave_group(DType type, const uint8_t* rows, size_t row_bytes, int num_rows, int64_t k, uint8_t* out) {
  std::memset(out, 0, interleaved_group_bytes(type, k));
  if (type == DType::Q4_K) return interleave_q4_k(rows, row_bytes, num_rows, k, out);
  if (type == DType::Q6_K) return interleave_q6_k(rows, row_bytes, num_rows, k, out);
  const BlockShape s = shape_of(type);
  const int64_t num_blocks = k / kQK;
  const size_t head = 16 + (s.has_min ? 16 : 0);
  const size_t qh_bytes = s.bits == 5 ? 32 : 0;
  const size_t out_block = kInterleaveRows * s.block_bytes;
  for (int64_t i = 0; i < num_blocks; ++i) {
    uint8_t* group = out + i * out_block;
    uint8_t* qh = group + head;
    uint8_t* qs = qh + qh_bytes;
    for (int row = 0; row < num_rows; ++row) {
      const uint8_t* block = rows + row * row_bytes + i * s.block_bytes;
      std::memcpy(group + 2 * row, block, 2);                          // d
      if (s.has_min) std::memcpy(group + 16 + 2 * row, block + 2, 2);  // m
      if (s.bits == 8) {  // whole 4-byte chunks (the large tied embeddings are Q8_0: this is their load time)
        for (int chunk = 0; chunk < 8; ++chunk) std::memcpy(qs + 32 * chunk + 4 * row, block + s.qs_offset + 4 * chunk, 4);
        continue;
      }
      uint8_t codes[kQK];
      block_codes(s, block, codes);
      for (int j = 0; j < kQK; ++j) {
        const int chunk = j / 4, lane_byte = 4 * row + j % 4;
        if (s.bits == 8) {
          qs[32 * chunk + lane_byte] = codes[j];
          continue;
        }
        // Chunks 0-3 (weights 0-15) are low nibbles of vectors 0-3, chunks 4-7 their high nibbles.
        const uint8_t nibble = codes[j] & 0x0F;
        if (chunk < 4) qs[32 * chunk + lane_byte] |= nibble;
        else qs[32 * (chunk - 4) + lane_byte] |= static_cast<uint8_t>(nibble << 4);
        if (s.bits == 5 && (codes[j] & 0x10) != 0) qh[lane_byte] |= static_cast<uint8_t>(1u << chunk);
      }
    }
  }
}

void deinterleave_row(DType type, const uint8_t* group, int lane, int64_t k, uint8_t* row) {
  if (type == DType::Q4_K) {
    for (int64_t i = 0; i < k / kQK_K; ++i) {
      const uint8_t* g = group + i * kQ4KGroupBlock;
      BlockQ4_K b{};
      std::memcpy(&b.d, g + 2 * lane, 2);
      std::memcpy(&b.dmin, g + 16 + 2 * lane, 2);
      uint8_t scale[8], min[8];
      for (int j = 0; j < 8; ++j) {
        int16_t m;
        std::memcpy(&m, g + 96 + 2 * ((j / 2) * 16 + 2 * lane + j % 2), 2);
        scale[j] = g[32 + 8 * j + lane], min[j] = static_cast<uint8_t>(m);
      }
      for (int j = 0; j < 4; ++j) {  // the packing scale_min_k4 reads
        b.scales[j] = static_cast<uint8_t>((scale[j] & 63) | ((scale[j + 4] >> 4) << 6));
        b.scales[j + 4] = static_cast<uint8_t>((min[j] & 63) | ((min[j + 4] >> 4) << 6));
        b.scales[j + 8] = static_cast<uint8_t>((scale[j + 4] & 0x0F) | ((min[j + 4] & 0x0F) << 4));
      }
      for (int t = 0; t < 4; ++t) {
        for (int l = 0; l < 32; ++l) b.qs[32 * t + l] = g[224 + 256 * t + 32 * (l / 4) + 4 * lane + l % 4];
      }
      std::memcpy(row + i * sizeof(BlockQ4_K), &b, sizeof(b));
    }
    return;
  }
  if (type == DType::Q6_K) {
    for (int64_t i = 0; i < k / kQK_K; ++i) {
      const uint8_t* g = group + i * kQ6KGroupBlock;
      BlockQ6_K b{};
      std::memcpy(&b.d, g + 2 * lane, 2);
      for (int sub = 0; sub < 16; ++sub) b.scales[sub] = static_cast<int8_t>(g[16 + 8 * sub + lane]);
      for (int h = 0; h < 2; ++h) {
        for (int t = 0; t < 4; ++t) {
          for (int l = 0; l < 32; ++l) {
            const int w = 128 * h + 32 * t + l;
            const uint8_t q = g[144 + 128 * (w / 16) + 32 * ((w % 16) / 4) + 4 * lane + w % 4];
            b.ql[64 * h + l + (t % 2) * 32] |= static_cast<uint8_t>(t < 2 ? (q & 0x0F) : (q & 0x0F) << 4);
            b.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * t));
          }
        }
      }
      std::memcpy(row + i * sizeof(BlockQ6_K), &b, sizeof(b));
    }
    return;
  }
  const BlockShape s = shape_of(type);
  const size_t head = 16 + (s.has_min ? 16 : 0);
  const size_t qh_bytes = s.bits == 5 ? 32 : 0;
  for (int64_t i = 0; i < k / kQK; ++i) {
    const uint8_t* g = group + i * kInterleaveRows * s.block_bytes;
    uint8_t* block = row + i * s.block_bytes;
    std::memset(block, 0, s.block_bytes);
    std::memcpy(block, g + 2 * lane, 2);
    if (s.has_min) std::memcpy(block + 2, g + 16 + 2 * lane, 2);
    uint32_t qh = 0;
    for (int j = 0; j < kQK; ++j) {
      const int chunk = j / 4, lane_byte = 4 * lane + j % 4;
      const uint8_t* qs = g + head + qh_bytes;
      if (s.bits == 8) {
        block[s.qs_offset + j] = qs[32 * chunk + lane_byte];
        continue;
      }
      const uint8_t nibble = chunk < 4 ? (qs[32 * chunk + lane_byte] & 0x0F) : (qs[32 * (chunk - 4) + lane_byte] >> 4);
      if (j < 16) block[s.qs_offset + j] |= nibble;
      else block[s.qs_offset + j - 16] |= static_cast<uint8_t>(nibble << 4);
      if (s.bits == 5 && ((g[head + lane_byte] >> chunk) & 1) != 0) qh |= 1u << j;
    }
    if (s.bits == 5) std::memcpy(block + s.qh_offset, &qh, 4);
  }
}

}  // namespace tern::kernels
