// One matrix product, for comparing kernel changes: quantized weights (random values, scales 1.0) times
// m activation rows; prints GMAC/s per shape (median of the repeats), for the file layout and, where
// this machine has one, the interleaved layout. One thread unless told (more: the pool that serves).
//   build/bench/matmul_throughput [TYPE=q4_1|q4_0|q5_0|q5_1|q8_0|q4_k|q6_k] [K=640] [N=2048] [M=1,16,64,512] [repeats=7] [threads=1]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "tensor/dtype.h"

int main(int argc, char** argv) {
  using namespace tern;
  const std::string type_name = argc > 1 ? argv[1] : "q4_1";
  const int64_t k = argc > 2 ? std::stoll(argv[2]) : 640;
  const int64_t n = argc > 3 ? std::stoll(argv[3]) : 2048;
  const int repeats = argc > 5 ? std::stoi(argv[5]) : 7;
  const int threads = argc > 6 ? std::stoi(argv[6]) : 1;
  std::vector<int64_t> ms = {1, 16, 64, 512};
  if (argc > 4) {
    ms.clear();
    std::string list = argv[4];
    for (size_t pos = 0; pos < list.size();) {
      const size_t comma = list.find(',', pos);
      ms.push_back(std::stoll(list.substr(pos, comma - pos)));
      pos = comma == std::string::npos ? list.size() : comma + 1;
    }
  }
  DType type = DType::Q4_1;
  if (type_name == "q4_0") type = DType::Q4_0;
  else if (type_name == "q5_0") type = DType::Q5_0;
  else if (type_name == "q5_1") type = DType::Q5_1;
  else if (type_name == "q8_0") type = DType::Q8_0;
  else if (type_name == "q4_k") type = DType::Q4_K;
  else if (type_name == "q6_k") type = DType::Q6_K;
  const DTypeInfo& info = dtype_info(type);
  const size_t row_bytes = dtype_bytes(info, static_cast<uint64_t>(k));
  std::vector<uint8_t> weights(row_bytes * static_cast<size_t>(n));
  std::mt19937 rng(1);
  for (auto& b : weights) b = static_cast<uint8_t>(rng());
  // Block scales (d, and m / dmin where there is one) 1.0 (f16 0x3C00), not random bit patterns (NaN).
  const bool has_second = type == DType::Q4_1 || type == DType::Q5_1 || type == DType::Q4_K;
  const size_t d_offset = type == DType::Q6_K ? 208 : 0;
  for (size_t off = 0; off + info.block_bytes <= weights.size(); off += info.block_bytes) {
    weights[off + d_offset] = 0x00, weights[off + d_offset + 1] = 0x3C;
    if (has_second) weights[off + 2] = 0x00, weights[off + 3] = 0x3C;
  }
  kernels::ThreadPool pool(threads);
  kernels::MatmulScratch scratch;
  std::normal_distribution<float> normal;
  for (auto layout : {kernels::WeightLayout::FILE, kernels::WeightLayout::FASTEST}) {
    const auto w = kernels::make_weight_matrix(type, k, n, weights.data(), layout);
    if (layout == kernels::WeightLayout::FASTEST && !w.interleaved) break;
    std::printf("%s K=%lld N=%lld, %d thread(s), %s layout\n", std::string(info.name).c_str(), static_cast<long long>(k),
                static_cast<long long>(n), threads, w.interleaved ? "interleaved" : "file");
    for (int64_t m : ms) {
      std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
      for (float& v : x) v = normal(rng);
      std::vector<double> seconds;
      for (int r = 0; r < repeats; ++r) {
        const auto start = std::chrono::steady_clock::now();
        kernels::matmul(pool, w, x.data(), m, y.data(), scratch);
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(seconds.begin(), seconds.end());
      const double median = seconds[seconds.size() / 2];
      std::printf("  M=%-4lld %8.2f GMAC/s  %8.3f ms\n", static_cast<long long>(m), static_cast<double>(m * k * n) / median / 1e9, median * 1e3);
    }
  }
}
