// What LoRA adapters add to one engine step, measured in process (no server, no scheduler): the model's
// forward pass on a decode step of S sequences and on a prompt chunk, without adapters, with every
// sequence on its own adapter kept as f16, and kept as q8. The variants are interleaved repeat by
// repeat so the machine's drift hits all of them alike; prints the median ms per step and the ratio.
//
//   lora_step MODEL.gguf ADAPTER.gguf... [--streams 16] [--depth 300] [--chunk 256] [--threads 2] [--repeats 15]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/lora.h"
#include "model/model.h"

namespace {

using namespace tern;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf ADAPTER.gguf... [--streams 16] [--depth 300] [--chunk 256] [--threads 2] [--repeats 15]\n",
                 argv[0]);
    return 2;
  }
  int streams = 16, depth = 300, chunk = 256, threads = 2, repeats = 15, only = -1;
  std::vector<std::string> adapter_paths;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("--") && i + 1 < argc) {
      const int value = std::stoi(argv[++i]);
      if (arg == "--streams") streams = value;
      else if (arg == "--depth") depth = value;
      else if (arg == "--chunk") chunk = value;
      else if (arg == "--threads") threads = value;
      else if (arg == "--repeats") repeats = value;
      else if (arg == "--only") only = value;  // 0 none, 1 f16, 2 q8: for profiling one variant
      continue;
    }
    adapter_paths.push_back(arg);
  }
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(threads);
  auto loaded = model::Model::load(argv[1], *cpu);
  if (!loaded) {
    std::fprintf(stderr, "error: %s\n", loaded.error().message.c_str());
    return 1;
  }
  model::Model& m = **loaded;
  // adapters[0]: none; [1]: f16; [2]: q8 (one per stream, cycling through the files given).
  std::vector<std::vector<std::shared_ptr<const model::LoraAdapter>>> adapters(3);
  for (int kind = 1; kind <= 2; ++kind) {
    for (int s = 0; s < streams; ++s) {
      const std::string& path = adapter_paths[static_cast<size_t>(s) % adapter_paths.size()];
      auto a = model::load_lora(path, m.config(), {.weight_type = kind == 1 ? backend::LoraWeightType::F16 : backend::LoraWeightType::Q8});
      if (!a) {
        std::fprintf(stderr, "error: %s\n", a.error().message.c_str());
        return 1;
      }
      adapters[static_cast<size_t>(kind)].push_back(*a);
    }
  }
  const int block_size = 16;
  const int blocks_per_seq = (std::max(depth, chunk) + 1 + block_size - 1) / block_size;
  const std::unique_ptr<backend::KvCache> cache = m.make_kv_cache(static_cast<int64_t>(blocks_per_seq) * streams, block_size);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(streams));
  for (int s = 0; s < streams; ++s) {
    for (int b = 0; b < blocks_per_seq; ++b) tables[static_cast<size_t>(s)].push_back(s * blocks_per_seq + b);
  }
  std::vector<float> logits;
  auto step = [&](const model::Batch& batch) {
    const auto start = std::chrono::steady_clock::now();
    if (auto ok = m.forward(batch, *cache, logits); !ok) {
      std::fprintf(stderr, "error: %s\n", ok.error().message.c_str());
      std::exit(1);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1e3;
  };
  const char* names[] = {"no adapter", "f16 adapters", "q8 adapters"};
  std::vector<double> decode_ms[3], prefill_ms[3];
  for (int r = 0; r < repeats; ++r) {
    for (int kind = 0; kind < 3; ++kind) {
      if (only >= 0 && kind != only) continue;
      model::Batch decode;
      for (int s = 0; s < streams; ++s) {
        decode.add(1000 + s, depth, s, true, kind == 0 ? nullptr : adapters[static_cast<size_t>(kind)][static_cast<size_t>(s)].get());
      }
      decode.block_tables.resize(static_cast<size_t>(streams));
      for (int s = 0; s < streams; ++s) decode.block_tables[static_cast<size_t>(s)] = tables[static_cast<size_t>(s)];
      decode_ms[kind].push_back(step(decode));
      model::Batch prefill;
      for (int t = 0; t < chunk; ++t) {
        prefill.add(1000 + t, t, 0, t + 1 == chunk, kind == 0 ? nullptr : adapters[static_cast<size_t>(kind)][0].get());
      }
      prefill.block_tables.resize(1);
      prefill.block_tables[0] = tables[0];
      if (chunk > 0) prefill_ms[kind].push_back(step(prefill));
    }
  }
  std::printf("%d threads; decode step: %d streams at depth %d, each on its own adapter; prompt chunk: %d tokens of one adapter\n",
              threads, streams, depth, chunk);
  std::printf("| adapters | decode step ms | vs none | prompt chunk ms | vs none |\n|---|---|---|---|---|\n");
  for (int kind = 0; kind < 3; ++kind) {
    if (decode_ms[kind].empty() || decode_ms[0].empty()) continue;
    const double d = median(decode_ms[kind]), p = chunk > 0 ? median(prefill_ms[kind]) : 0;
    std::printf("| %s | %.2f | %.3f | %.2f | %.3f |\n", names[kind], d, d / median(decode_ms[0]), p,
                chunk > 0 ? p / median(prefill_ms[0]) : 0.0);
  }
}
