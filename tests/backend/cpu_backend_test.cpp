// The CPU backend op by op against plain references written here (double-precision loops, no SIMD, no
// threads), on random data with odd sizes. Tolerances: element-wise ops and RoPE must match the float
// formulas to float rounding (1e-5 relative; RoPE angles follow llama.cpp's float recurrence, which is
// the definition here); attention keeps K/V in F16 and rounds queries and weights to F16 as llama.cpp
// does, so it is compared with a reference that does the same roundings, allowing each weight to land
// one F16 ulp (2^-10 relative) the other way: the bound is sum_j w_j |v_j| 2^-10; a projection of several
// matrices must equal separate matmuls exactly (same kernels, same order).

#include "backend/backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/half.h"

namespace tern::backend {
namespace {

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

float round_f16(float x) { return f16_to_float(float_to_f16(x)); }

TEST(CpuBackend, ElementWiseOpsMatchTheFormulas) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(1);
  const int64_t rows = 37, n = 131;  // odd sizes, enough rows to go parallel
  const auto x = random_floats(rows * n, rng), w = random_floats(n, rng), y = random_floats(rows * n, rng);
  std::vector<float> out(rows * n);
  be->rms_norm(x.data(), w.data(), out.data(), rows, n, 1e-6f);
  for (int64_t i = 0; i < rows; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += double(x[i * n + j]) * x[i * n + j];
    const double inv = 1.0 / std::sqrt(sum / n + 1e-6);
    for (int64_t j = 0; j < n; ++j) ASSERT_NEAR(out[i * n + j], x[i * n + j] * inv * w[j], 1e-5 * (1 + std::abs(out[i * n + j])));
  }
  std::vector<float> sum = x, y_kept = y;  // the residual step with neither norm: a plain sum
  be->add_residual_norm(sum.data(), y_kept.data(), nullptr, nullptr, nullptr, rows, n, 1e-6f);
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(sum[i], x[i] + y[i]);
  ASSERT_EQ(y_kept, y);
  std::vector<float> biased = x;
  be->add_bias(biased.data(), w, rows);
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(biased[i], x[i] + w[i % n]);
  be->gated_activation(Gating::SILU, x.data(), y.data(), out.data(), rows * n);
  for (int64_t i = 0; i < rows * n; ++i) {
    const double silu = x[i] / (1.0 + std::exp(-double(x[i])));
    ASSERT_NEAR(out[i], silu * y[i], 1e-5 * (1 + std::abs(silu * y[i])));
  }
  be->gated_activation(Gating::GELU, x.data(), y.data(), out.data(), rows * n);
  for (int64_t i = 0; i < rows * n; ++i) {
    const double g = x[i], gelu = 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
    ASSERT_NEAR(out[i], gelu * y[i], 2e-3 * (1 + std::abs(gelu * y[i]))) << "GELU is tabulated (kernels/cpu/ops.h)";
  }
}

// The fused step between blocks gives the separate ops' bits, with and without either norm, on a
// decode-sized batch (inline) and a prompt-sized one (parallel).
TEST(CpuBackend, AddResidualNormEqualsTheSeparateOps) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(3);
  const int64_t n = 131;
  for (const int64_t rows : {1, 5, 40}) {
    const auto x = random_floats(rows * n, rng), y = random_floats(rows * n, rng);
    const auto post = random_floats(n, rng), next = random_floats(n, rng);
    for (const bool with_post : {false, true}) {
      for (const bool with_next : {false, true}) {
        std::vector<float> x_fused = x, y_fused = y, normed_fused(rows * n, -1.0f);
        be->add_residual_norm(x_fused.data(), y_fused.data(), with_post ? post.data() : nullptr,
                              with_next ? next.data() : nullptr, normed_fused.data(), rows, n, 1e-6f);
        std::vector<float> x_apart = x, y_apart = y, normed_apart(rows * n, -1.0f);
        if (with_post) be->rms_norm(y_apart.data(), post.data(), y_apart.data(), rows, n, 1e-6f);
        for (int64_t i = 0; i < rows * n; ++i) x_apart[i] += y_apart[i];
        if (with_next) be->rms_norm(x_apart.data(), next.data(), normed_apart.data(), rows, n, 1e-6f);
        ASSERT_EQ(x_fused, x_apart) << rows << " rows, post " << with_post << ", next " << with_next;
        ASSERT_EQ(y_fused, y_apart) << rows << " rows";
        ASSERT_EQ(normed_fused, normed_apart) << rows << " rows";
      }
    }
  }
}

TEST(CpuBackend, RopeMatchesThePerPositionReference) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(2);
  const std::vector<int32_t> positions = {0, 1, 7, 100, 4095, 33, 2};
  const int64_t heads = 3, head_dim = 64, rotary = 64;
  for (RopeStyle style : {RopeStyle::NORM, RopeStyle::NEOX}) {
    const auto x = random_floats(positions.size() * heads * head_dim, rng);
    std::vector<float> ours = x, theirs = x;
    RopeTable table;
    be->rope_table(positions, {.rotary_dims = rotary, .base = 10000.0f}, table);
    be->norm_rope_qk(ours.data(), heads, nullptr, 0, static_cast<int64_t>(positions.size()), head_dim, nullptr, nullptr, 0.0f,
                     style, table);
    const float theta_scale = std::pow(10000.0f, -2.0f / rotary);
    for (size_t i = 0; i < positions.size(); ++i) {
      for (int64_t h = 0; h < heads; ++h) {
        float* head = theirs.data() + (i * heads + h) * head_dim;
        float theta = static_cast<float>(positions[i]);
        for (int64_t d = 0; d < rotary / 2; ++d, theta *= theta_scale) {
          const int64_t a = style == RopeStyle::NORM ? 2 * d : d;
          const int64_t b = style == RopeStyle::NORM ? 2 * d + 1 : d + rotary / 2;
          const double c = std::cos(double(theta)), sn = std::sin(double(theta)), x0 = head[a], x1 = head[b];
          head[a] = static_cast<float>(x0 * c - x1 * sn);
          head[b] = static_cast<float>(x0 * sn + x1 * c);
        }
      }
    }
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(ours[i], theirs[i], 1e-5 * (1 + std::abs(theirs[i]))) << i;
  }
}

// Norms of each head before RoPE, in the same pass, give the bits of rms_norm on every head first;
// keys get their own norm and head count.
TEST(CpuBackend, NormRopeQkEqualsNormingEachHeadFirst) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(4);
  const int64_t heads = 4, kv_heads = 1, head_dim = 32;
  for (const int64_t m : {1, 3, 40}) {
    std::vector<int32_t> positions(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(7 * i + 3);
    RopeTable table;
    be->rope_table(positions, {.rotary_dims = head_dim, .base = 10000.0f}, table);
    const auto q = random_floats(m * heads * head_dim, rng), k = random_floats(m * kv_heads * head_dim, rng);
    const auto q_norm = random_floats(head_dim, rng), k_norm = random_floats(head_dim, rng);
    std::vector<float> q_fused = q, k_fused = k;
    be->norm_rope_qk(q_fused.data(), heads, k_fused.data(), kv_heads, m, head_dim, q_norm.data(), k_norm.data(), 1e-6f,
                     RopeStyle::NEOX, table);
    std::vector<float> q_apart = q, k_apart = k;
    be->rms_norm(q_apart.data(), q_norm.data(), q_apart.data(), m * heads, head_dim, 1e-6f);
    be->rms_norm(k_apart.data(), k_norm.data(), k_apart.data(), m * kv_heads, head_dim, 1e-6f);
    be->norm_rope_qk(q_apart.data(), heads, nullptr, 0, m, head_dim, nullptr, nullptr, 0.0f, RopeStyle::NEOX, table);
    be->norm_rope_qk(k_apart.data(), kv_heads, nullptr, 0, m, head_dim, nullptr, nullptr, 0.0f, RopeStyle::NEOX, table);
    ASSERT_EQ(q_fused, q_apart) << m << " rows";
    ASSERT_EQ(k_fused, k_apart) << m << " rows";
  }
}

TEST(CpuBackend, AttentionMatchesANaiveReferenceWithTheSameRoundings) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(3);
  const AttentionShape shape{.num_heads = 6, .num_kv_heads = 2, .head_dim = 16, .value_dim = 16, .scale = 0.25f, .window = 0};
  const KvCacheShape kv_shape{.num_layers = 1, .key_width = 2 * 16, .value_width = 2 * 16, .block_size = 16};
  auto cache = be->make_kv_cache(kv_shape, 8);
  // Two sequences in scattered blocks; a batch of their positions (a prefill of 21 and one decode).
  const std::vector<int32_t> table_a = {5, 2}, table_b = {7, 0, 3};
  const std::vector<std::span<const int32_t>> tables = {table_a, table_b};
  std::vector<int32_t> positions, slots;
  for (int32_t p = 0; p < 21; ++p) positions.push_back(p), slots.push_back(0);
  for (int32_t p = 0; p < 40; ++p) positions.push_back(p), slots.push_back(1);
  const TokenRows rows{.positions = positions, .seq_slots = slots, .block_tables = tables};
  const int64_t m = rows.size();
  const auto k = random_floats(m * kv_shape.key_width, rng), v = random_floats(m * kv_shape.value_width, rng);
  const auto q = random_floats(m * shape.num_heads * shape.head_dim, rng);
  be->store_kv(*cache, 0, rows, k.data(), v.data());
  for (int64_t window : {int64_t{0}, int64_t{9}}) {
    AttentionShape s = shape;
    s.window = window;
    std::vector<float> out(m * s.num_heads * s.value_dim);
    be->attention(*cache, 0, rows, s, q.data(), out.data());
    for (int64_t i = 0; i < m; ++i) {
      // This row's sequence: the rows of the same slot at positions <= its own (the batch holds them all).
      const int64_t first_row = slots[i] == 0 ? 0 : 21, pos = positions[i];
      const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      for (int64_t h = 0; h < s.num_heads; ++h) {
        const int64_t kv = h / (s.num_heads / s.num_kv_heads);
        std::vector<double> scores;
        double max_score = -1e30;
        for (int64_t j = first; j <= pos; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.head_dim; ++d) {
            dot += double(round_f16(q[(i * s.num_heads + h) * s.head_dim + d])) *
                   round_f16(k[(first_row + j) * kv_shape.key_width + kv * s.head_dim + d]);
          }
          scores.push_back(dot * s.scale);
          max_score = std::max(max_score, scores.back());
        }
        double total = 0;
        for (double& sc : scores) total += (sc = std::exp(sc - max_score));
        for (int64_t d = 0; d < s.value_dim; ++d) {
          double expected = 0, bound = 1e-6;
          for (int64_t j = first; j <= pos; ++j) {
            const double weight = scores[j - first] / total;
            const double value = round_f16(v[(first_row + j) * kv_shape.value_width + kv * s.value_dim + d]);
            expected += round_f16(static_cast<float>(weight)) * value;
            bound += weight * std::abs(value) * std::ldexp(1.0, -10);
          }
          ASSERT_NEAR(out[(i * s.num_heads + h) * s.value_dim + d], expected, bound)
              << "row " << i << " head " << h << " window " << window;
        }
      }
    }
  }
}

// Rows are attended in tiles (each key read once for several rows): a prompt chunk's consecutive
// rows (the positions before the first row once for all, then each row's own). Decode rows of
// sequences sharing cached blocks sit between the chunks. Every row's result must be the bits it gets
// alone, for any tile, window, soft-cap, head grouping and thread count.
TEST(CpuBackend, AttentionOfRowsInTilesEqualsEachRowAlone) {
  std::mt19937 rng(8);
  for (const int threads : {1, 2}) {
    auto be = make_cpu_backend(threads);
    for (const int64_t num_kv_heads : {int64_t{1}, int64_t{3}}) {
      const AttentionShape shape{.num_heads = 9, .num_kv_heads = num_kv_heads, .head_dim = 64, .value_dim = 64, .scale = 0.125f};
      const KvCacheShape kv_shape{.num_layers = 1, .key_width = num_kv_heads * 64, .value_width = num_kv_heads * 64, .block_size = 16};
      auto cache = be->make_kv_cache(kv_shape, 16);
      // Sequence 0: 107 positions; sequence 1: 5 of its own; sequences 2-4 share sequence 0's first
      // blocks (3, 2 and 1 of them), then blocks of their own.
      const std::vector<int32_t> table_a = {9, 2, 14, 0, 5, 11, 7}, table_b = {3}, table_c = {9, 2, 14, 6}, table_d = {9, 2, 12},
                                 table_e = {9, 13};
      const std::vector<std::span<const int32_t>> tables = {table_a, table_b, table_c, table_d, table_e};
      std::vector<int32_t> all_positions, all_slots;
      auto add = [](std::vector<int32_t>& positions, std::vector<int32_t>& slots, int32_t slot, int32_t from, int32_t to) {
        for (int32_t p = from; p <= to; ++p) positions.push_back(p), slots.push_back(slot);
      };
      add(all_positions, all_slots, 0, 0, 106);
      add(all_positions, all_slots, 1, 0, 4);
      add(all_positions, all_slots, 2, 48, 60);
      add(all_positions, all_slots, 3, 32, 40);
      add(all_positions, all_slots, 4, 16, 20);
      const TokenRows all{.positions = all_positions, .seq_slots = all_slots, .block_tables = tables};
      const auto k = random_floats(all.size() * kv_shape.key_width, rng), v = random_floats(all.size() * kv_shape.value_width, rng);
      be->store_kv(*cache, 0, all, k.data(), v.data());
      // A step: a 70-row chunk of sequence 0, a 5-row chunk of sequence 1, one decode row of each of 2-4.
      std::vector<int32_t> positions, slots;
      add(positions, slots, 0, 37, 106);
      add(positions, slots, 2, 60, 60);
      add(positions, slots, 1, 0, 4);
      add(positions, slots, 3, 40, 40);
      add(positions, slots, 4, 20, 20);
      const TokenRows rows{.positions = positions, .seq_slots = slots, .block_tables = tables};
      const int64_t m = rows.size(), width = shape.num_heads * shape.value_dim;
      const auto q = random_floats(m * shape.num_heads * shape.head_dim, rng);
      for (const int64_t window : {int64_t{0}, int64_t{50}, int64_t{200}}) {
        for (const float softcap : {0.0f, 30.0f}) {
          AttentionShape s = shape;
          s.window = window, s.softcap = softcap;
          std::vector<float> together(m * width);
          be->attention(*cache, 0, rows, s, q.data(), together.data());
          for (int64_t i = 0; i < m; ++i) {
            const TokenRows one{.positions = std::span(positions).subspan(i, 1), .seq_slots = std::span(slots).subspan(i, 1),
                                .block_tables = tables};
            std::vector<float> alone(width);
            be->attention(*cache, 0, one, s, q.data() + i * shape.num_heads * shape.head_dim, alone.data());
            ASSERT_EQ(0, std::memcmp(alone.data(), together.data() + i * width, width * sizeof(float)))
                << "row " << i << " window " << window << " softcap " << softcap << " kv heads " << num_kv_heads << " threads " << threads;
          }
        }
      }
    }
  }
}

TEST(CpuBackend, ProjectEqualsSeparateMatmulsAndEmbedMatchesTheTable) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(4);
  const int64_t k = 96, m = 5;
  std::vector<float> wa = random_floats(40 * k, rng, 0.1f), wb = random_floats(24 * k, rng, 0.1f);
  const auto bytes = [](const std::vector<float>& w) { return reinterpret_cast<const uint8_t*>(w.data()); };
  auto a = be->load_matrix(DType::F32, k, 40, bytes(wa), false), b = be->load_matrix(DType::F32, k, 24, bytes(wb), false);
  ASSERT_TRUE(a && b);
  const auto x = random_floats(m * k, rng);
  std::vector<float> ya(m * 40), yb(m * 24), pa(m * 40), pb(m * 24);
  be->matmul(*a, x.data(), m, ya.data());
  be->matmul(*b, x.data(), m, yb.data());
  const Matrix* both[] = {&*a, &*b};
  float* outs[] = {pa.data(), pb.data()};
  be->project(both, x.data(), m, outs);
  EXPECT_EQ(pa, ya);
  EXPECT_EQ(pb, yb);
  // Embedding rows straight from an F32 table, scaled.
  const std::vector<int32_t> tokens = {3, 0, 39, 3};
  std::vector<float> embedded(tokens.size() * k);
  const EmbeddingTable table{.type = DType::F32, .file_bytes = {bytes(wa), wa.size() * 4}, .tied_output = nullptr};
  be->embed(table, tokens, k, 2.0f, embedded.data());
  for (size_t i = 0; i < tokens.size(); ++i) {
    for (int64_t j = 0; j < k; ++j) ASSERT_EQ(embedded[i * k + j], wa[tokens[i] * k + j] * 2.0f);
  }
  // A matrix whose rows are not whole quant blocks is refused before any byte is read.
  auto bad = be->load_matrix(DType::Q4_0, 95, 2, nullptr, false);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message, "rows are not whole blocks");
}

}  // namespace
}  // namespace tern::backend
