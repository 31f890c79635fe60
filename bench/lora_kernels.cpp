// The LoRA kernels on one thread, for comparing kernel changes: one rank-R adapter on SmolLM2-135M's
// seven projections of one layer (q, k, v, o, gate, up, down), applied to m rows that share it, for
// each weight type (F16, Q8); prints GMAC/s and ns per row per layer (median of the repeats).
// m = 1 is a decode step's row of an adapter no other row uses; larger m a prompt chunk.
// COPIES distinct adapters are cycled through: 1 keeps the weights in cache; 256 (about 83 MB of F16)
// makes every call read them from memory, as a decode step of many adapters does.
//   build/bench/lora_kernels [RANK=16] [M=1,2,4,16,64] [repeats=9] [COPIES=1]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/lora.h"
#include "tensor/half.h"

namespace {

using namespace tern::kernels;

struct Matrix {
  int64_t in, out;
  std::vector<uint16_t> a16, b16;
  std::vector<int8_t> a8, b8;
  std::vector<float> a_scales, b_scales;
};

std::vector<int64_t> parse_list(const std::string& list) {
  std::vector<int64_t> values;
  for (size_t pos = 0; pos < list.size();) {
    const size_t comma = list.find(',', pos);
    values.push_back(std::stoll(list.substr(pos, comma - pos)));
    pos = comma == std::string::npos ? list.size() : comma + 1;
  }
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rank = argc > 1 ? std::stoll(argv[1]) : 16;
  const std::vector<int64_t> ms = parse_list(argc > 2 ? argv[2] : "1,2,4,16,64");
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 9;
  const int64_t copies = argc > 4 ? std::stoll(argv[4]) : 1;
  // SmolLM2-135M: width 576, 3 KV heads of 64 (192), FFN 1536.
  const std::pair<int64_t, int64_t> shapes[] = {{576, 576}, {576, 192}, {576, 192}, {576, 576}, {576, 1536}, {576, 1536}, {1536, 576}};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<std::vector<Matrix>> adapters(static_cast<size_t>(copies));
  int64_t macs_per_row = 0;
  for (auto& matrices : adapters) {
  macs_per_row = 0;
  for (auto [in, out] : shapes) {
    Matrix m;
    m.in = in;
    m.out = out;
    std::vector<float> a(static_cast<size_t>(rank * in)), b_t(static_cast<size_t>(rank * out));
    for (auto& v : a) v = normal(rng);
    for (auto& v : b_t) v = normal(rng);
    for (float v : a) m.a16.push_back(tern::float_to_f16(v));
    for (float v : b_t) m.b16.push_back(tern::float_to_f16(v));
    m.a8.resize(a.size());
    m.a_scales.resize(static_cast<size_t>(rank * lora_q8_blocks(in)));
    m.b8.resize(b_t.size());
    m.b_scales.resize(static_cast<size_t>(rank * lora_q8_blocks(out)));
    quantize_lora_q8(a.data(), rank, in, m.a8.data(), m.a_scales.data());
    quantize_lora_q8(b_t.data(), rank, out, m.b8.data(), m.b_scales.data());
    macs_per_row += rank * (in + out);
    matrices.push_back(std::move(m));
  }
  }
  const LoraKernels& kernels = lora_kernels();
  std::printf("rank %lld, SmolLM2-135M's 7 projections of a layer (%lld multiply-adds a row), %lld adapters cycled, 1 thread\n",
              static_cast<long long>(rank), static_cast<long long>(macs_per_row), static_cast<long long>(copies));
  std::printf("| weights | rows | GMAC/s | ns per row per layer |\n|---|---|---|---|\n");
  for (LoraWeightType type : {LoraWeightType::F16, LoraWeightType::Q8}) {
    for (int64_t m : ms) {
      std::vector<float> x(static_cast<size_t>(m * 1536)), y(static_cast<size_t>(m * 1536)), shrunk(static_cast<size_t>(m * rank));
      for (auto& v : x) v = normal(rng);
      // Enough calls per timing that each takes about 20 ms.
      const int64_t calls = std::max<int64_t>(1, 20'000'000 / (macs_per_row * m) * 10);
      std::vector<double> seconds;
      for (int rep = 0; rep < repeats; ++rep) {
        const auto start = std::chrono::steady_clock::now();
        for (int64_t call = 0; call < calls; ++call) {
          for (const Matrix& mat : adapters[static_cast<size_t>(call % copies)]) {
            LoraWeights w{.type = type, .rank = rank, .in = mat.in, .out = mat.out, .scale = 0.5f};
            if (type == LoraWeightType::F16) {
              w.a = mat.a16.data(), w.b_t = mat.b16.data();
            } else {
              w.a = mat.a8.data(), w.b_t = mat.b8.data(), w.a_scales = mat.a_scales.data(), w.b_scales = mat.b_scales.data();
            }
            lora_add_rows(kernels, w, x.data(), mat.in, y.data(), mat.out, m, shrunk.data());
          }
        }
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(seconds.begin(), seconds.end());
      const double s = seconds[seconds.size() / 2];
      std::printf("| %s | %lld | %.2f | %.0f |\n", type == LoraWeightType::Q8 ? "q8" : "f16", static_cast<long long>(m),
                  static_cast<double>(macs_per_row * m * calls) / s / 1e9, s / static_cast<double>(calls * m) * 1e9);
      if (y[0] == 12345.f) std::printf(" ");  // keep y alive
    }
  }
}
