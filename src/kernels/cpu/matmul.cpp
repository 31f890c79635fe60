#include "kernels/cpu/matmul.h"

#include <cstring>

#include "kernels/cpu/interleave.h"
#include "util/huge_page_memory.h"
#include "util/mapped_file.h"

namespace tern::kernels {
namespace {

/// Memory for a rearranged weight matrix: a large one on huge pages (a decode step streams every
/// matrix, one TLB entry per 2 MiB instead of per 4 KiB), a small one from the heap (a huge page would
/// hold mostly nothing).
std::shared_ptr<uint8_t[]> interleaved_storage(size_t bytes) {
  constexpr size_t kHugePageWorthIt = size_t{4} << 20;
  if (bytes < kHugePageWorthIt) return std::shared_ptr<uint8_t[]>(new uint8_t[bytes]);
  auto memory = std::make_shared<HugePageMemory>(bytes);
  return std::shared_ptr<uint8_t[]>(memory, static_cast<uint8_t*>(memory->data()));
}

}  // namespace

WeightMatrix make_weight_matrix(DType type, int64_t row_length, int64_t num_rows, const uint8_t* data, WeightLayout layout,
                                bool release_source) {
  WeightMatrix w;
  w.type = type;
  w.row_length = row_length;
  w.num_rows = num_rows;
  w.data = data;
  w.row_bytes = dtype_bytes(dtype_info(type), static_cast<uint64_t>(row_length));
  w.kernel = vec_dot_kernel(type);
  if (layout == WeightLayout::FASTEST && w.kernel.interleaved != nullptr && can_interleave(type) &&
      row_length % dtype_info(type).block_size == 0 && num_rows > 0) {
    w.group_bytes = interleaved_group_bytes(type, row_length);
    const int64_t num_groups = row_units(w);
    std::shared_ptr<uint8_t[]> copy = interleaved_storage(w.group_bytes * static_cast<size_t>(num_groups));
    const size_t source_bytes = static_cast<size_t>(num_rows) * w.row_bytes;
    size_t released = 0;
    for (int64_t g = 0; g < num_groups; ++g) {
      const int rows = static_cast<int>(std::min<int64_t>(kInterleaveRows, num_rows - g * kInterleaveRows));
      interleave_group(type, data + g * kInterleaveRows * w.row_bytes, w.row_bytes, rows, row_length,
                       copy.get() + g * w.group_bytes);
      const size_t done = std::min(source_bytes, static_cast<size_t>(g + 1) * kInterleaveRows * w.row_bytes);
      if (release_source && (done - released >= (size_t{4} << 20) || done == source_bytes)) {
        // Starting a page early covers the page that straddled the previous boundary (releasing a map's
        // page is always safe: it is read back from the file if touched again).
        const size_t from = released >= 4096 ? released - 4096 : 0;
        release_mapped_pages({data + from, done - from});
        released = done;
      }
    }
    w.data = copy.get();
    w.storage = std::move(copy);
    w.interleaved = true;
  }
  return w;
}

void copy_file_row(const WeightMatrix& w, int64_t row, uint8_t* out) {
  if (!w.interleaved) {
    std::memcpy(out, w.data + row * w.row_bytes, w.row_bytes);
    return;
  }
  deinterleave_row(w.type, w.data + (row / kInterleaveRows) * w.group_bytes, static_cast<int>(row % kInterleaveRows),
                   w.row_length, out);
}

namespace {

// Bands of 4 groups (32 weight rows) stay in L1/L2 while every activation row passes them.
//
// The two-group kernels read two groups side by side, that is two short streams (one group's row
// length) at once, and the hardware prefetcher takes a while to follow each new stream: where the
// weights come from L3 or memory and every group is read once (one pass of at most kMaxActRows
// activation rows, i.e. decode), they ran at half the speed of the one-group kernels on AMD Zen 4
// (`matmul_throughput q8_0 640 65536 1,16`, one thread: 14 vs 25-29 GMAC/s for one row; Q4_1 576 x
// 65536 19 vs 51). From a second pass on, the band comes from L1/L2 and two groups per broadcast win
// (Q8_0, 16 rows: 87 vs 76). The same bits either way.
void matmul_interleaved(const WeightMatrix& w, const uint8_t* act, size_t act_stride, int64_t m, float* y,
                        int64_t row_begin, int64_t row_end) {
  constexpr int64_t kBand = 4 * kInterleaveRows;
  const bool pairs = w.kernel.interleaved_pair != nullptr && m > kMaxActRows;
  for (int64_t band = row_begin; band < row_end; band += kBand) {
    const int64_t band_end = std::min(row_end, band + kBand);
    for (int64_t i = 0; i < m; i += kMaxActRows) {
      const int num = static_cast<int>(std::min<int64_t>(kMaxActRows, m - i));
      for (int64_t j = band; j < band_end;) {
        const uint8_t* group = w.data + (j / kInterleaveRows) * w.group_bytes;
        float* out = y + i * w.num_rows + j;
        // The first pass over a band streams it from memory: one group at a time (see above).
        const bool pair = pairs && i > 0 && band_end - j > kInterleaveRows;
        const int num_w = static_cast<int>(std::min<int64_t>((pair ? 2 : 1) * kInterleaveRows, band_end - j));
        if (pair) {
          w.kernel.interleaved_pair(w.row_length, group, w.group_bytes, act + i * act_stride, act_stride, num, out,
                                    static_cast<size_t>(w.num_rows), num_w);
        } else {
          w.kernel.interleaved(w.row_length, group, act + i * act_stride, act_stride, num, out, static_cast<size_t>(w.num_rows),
                               num_w);
        }
        j += num_w;
      }
    }
  }
}

}  // namespace

void matmul_units(const WeightMatrix& w, const uint8_t* act, size_t act_stride, int64_t m, float* y, int64_t unit_begin,
                  int64_t unit_end) {
  const int64_t row_begin = unit_begin * kRowUnit, row_end = std::min(w.num_rows, unit_end * kRowUnit);
  if (w.interleaved) {
    matmul_interleaved(w, act, act_stride, m, y, row_begin, row_end);
    return;
  }
  float out[kMaxActRows];
  // Activation rows in the outer loop keep a group of them hot in L1 while a band of weight rows
  // streams past; the band is small enough that its rows stay in L2 for the next group.
  constexpr int64_t kBand = 16;
  for (int64_t band = row_begin; band < row_end; band += kBand) {
    const int64_t band_end = std::min(row_end, band + kBand);
    for (int64_t i = 0; i < m; i += kMaxActRows) {
      const int num = static_cast<int>(std::min<int64_t>(kMaxActRows, m - i));
      for (int64_t j = band; j < band_end; ++j) {
        w.kernel.fn(w.row_length, w.data + j * w.row_bytes, act + i * act_stride, act_stride, num, out);
        for (int r = 0; r < num; ++r) y[(i + r) * w.num_rows + j] = out[r];
      }
    }
  }
}

void matmul(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t m, float* y, MatmulScratch& scratch) {
  const size_t stride = act_row_bytes(w.kernel.act_format, w.row_length);
  scratch.act.resize(stride * static_cast<size_t>(m));
  if (m >= 8) {
    pool.parallel_for(m, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        quantize_act_row(w.kernel.act_format, x + i * w.row_length, scratch.act.data() + i * stride, w.row_length);
      }
    });
  } else {
    for (int64_t i = 0; i < m; ++i) {
      quantize_act_row(w.kernel.act_format, x + i * w.row_length, scratch.act.data() + i * stride, w.row_length);
    }
  }
  pool.parallel_for(row_units(w), [&](int64_t begin, int64_t end) {
    matmul_units(w, scratch.act.data(), stride, m, y, begin, end);
  });
}

}  // namespace tern::kernels
