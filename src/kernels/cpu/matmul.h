#pragma once
// y = x W^T for a quantized weight matrix W (n rows of k) and float activations x (m rows of k):
// the activations are quantized once to the kernel's format, then the weight rows are split across
// threads and each row is dotted with up to kMaxActRows activation rows per pass.

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_dot.h"
#include "tensor/dtype.h"

namespace tern::kernels {

/// A weight matrix in the file's layout: `num_rows` rows of `row_length` weights of `type`.
struct WeightMatrix {
  DType type = DType::F32;
  int64_t row_length = 0;  ///< k
  int64_t num_rows = 0;    ///< n
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  VecDotKernel kernel{};
};

/// Fills row_bytes and picks the kernel; an empty kernel fn if the type has none.
WeightMatrix make_weight_matrix(DType type, int64_t row_length, int64_t num_rows, const uint8_t* data);

/// Reusable buffer for quantized activations (one per forward pass / thread of control).
struct MatmulScratch {
  std::vector<uint8_t> act;
};

/// y[i * n + j] = sum_k x[i * k + c] * W[j][c], for i < m.
void matmul(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t m, float* y, MatmulScratch& scratch);

/// Same, for weight rows [row_begin, row_end) only (y keeps stride n): lets callers fuse several
/// matrices into one parallel region or compute a slice (e.g. logits for some rows).
void matmul_rows(const WeightMatrix& w, const uint8_t* act, size_t act_stride, int64_t m, float* y,
                 int64_t row_begin, int64_t row_end);

}  // namespace tern::kernels
