#pragma once
// y = x W^T for a quantized weight matrix W (n rows of k) and float activations x (m rows of k):
// the activations are quantized once to the kernel's format, then the weight rows are split across
// threads and each row is dotted with up to kMaxActRows activation rows per pass.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_dot.h"
#include "tensor/dtype.h"

namespace tern::kernels {

/// A weight matrix: `num_rows` rows of `row_length` weights of `type`, in the file's layout (read in
/// place) or interleaved in groups of 8 rows (kernels/cpu/interleave.h, a copy this object owns).
struct WeightMatrix {
  DType type = DType::F32;
  int64_t row_length = 0;  ///< k
  int64_t num_rows = 0;    ///< n
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;  ///< of a file row
  VecDotKernel kernel{};
  bool interleaved = false;
  size_t group_bytes = 0;  ///< interleaved: group g (rows 8g..8g+7) starts at data + g * group_bytes
  std::shared_ptr<const uint8_t[]> storage;  ///< owns `data` when interleaved
};

enum class WeightLayout {
  FILE,     ///< read the rows in place
  FASTEST,  ///< interleave where this machine has a kernel for that (AVX2 / AVX-512 VNNI; see interleave.h)
};

/// Fills row_bytes and picks the kernel (an empty kernel fn if the type has none); with FASTEST,
/// copies the rows into the interleaved layout where that is faster. `release_source`: `data` is part
/// of a read-only file map, and its pages are released as they are copied (so a large matrix never
/// counts twice in the RSS).
WeightMatrix make_weight_matrix(DType type, int64_t row_length, int64_t num_rows, const uint8_t* data,
                                WeightLayout layout = WeightLayout::FILE, bool release_source = false);

/// Row `row` of `w` in the file's layout (row_bytes bytes at `out`), whatever the layout of `w`.
void copy_file_row(const WeightMatrix& w, int64_t row, uint8_t* out);

/// Threads split a matrix's rows in units of this many (an interleaved group).
inline constexpr int64_t kRowUnit = 8;
inline int64_t row_units(const WeightMatrix& w) { return (w.num_rows + kRowUnit - 1) / kRowUnit; }

/// Reusable buffer for quantized activations (one per forward pass / thread of control).
struct MatmulScratch {
  std::vector<uint8_t> act;
};

/// y[i * n + j] = sum_k x[i * k + c] * W[j][c], for i < m.
void matmul(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t m, float* y, MatmulScratch& scratch);

/// Same, for the weight rows of units [unit_begin, unit_end) only (rows kRowUnit * unit_begin up to
/// kRowUnit * unit_end or num_rows; y keeps stride n): lets callers fuse several matrices into one
/// parallel region or compute a slice (e.g. logits for some rows).
void matmul_units(const WeightMatrix& w, const uint8_t* act, size_t act_stride, int64_t m, float* y, int64_t unit_begin,
                  int64_t unit_end);

}  // namespace tern::kernels
