// Prefill and decode speed of tern on one model: the C++ half of bench/inference_vs_llamacpp.py.
//
//   inference_throughput MODEL.gguf [--prompt-tokens 512] [--decode-tokens 128] [--threads 2] [--repeats 3]
// prints one JSON line: prefill and decode tokens/s (median of repeats), peak RSS, weight bytes read
// per decoded token, measured memory bandwidth (one thread's copy; the read rate of as many threads
// as the model runs on, the bound a decode that reads every weight once can reach), and the parallel
// regions (fork-joins of the thread pool) one prompt and one decoded token cost.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "engine/sampling/sampler.h"
#include "kernels/cpu/thread_pool.h"
#include "model/model.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Copy bandwidth over a buffer far larger than the caches (bytes read + written per second).
double copy_bandwidth_bytes_per_second() {
  const size_t bytes = size_t{512} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::vector<double> rates;
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(2.0 * bytes / seconds);
  }
  return median(rates);
}

// Read bandwidth of `threads` threads, each summing its own slice of a buffer far larger than the
// caches (bytes read per second; the buffer is written first, so no page is the shared zero page).
double read_bandwidth_bytes_per_second(int threads) {
  const size_t words = (size_t{512} << 20) / sizeof(uint64_t);
  std::vector<uint64_t> data(words);
  for (size_t i = 0; i < words; ++i) data[i] = i;
  std::vector<double> rates;
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> readers;
    for (int t = 0; t < threads; ++t) {
      readers.emplace_back([&, t] {
        uint64_t sum = 0;
        for (size_t i = words * t / threads; i < words * (t + 1) / threads; ++i) sum += data[i];
        sums[static_cast<size_t>(t)] = sum;
      });
    }
    for (auto& reader : readers) reader.join();
    rates.push_back(static_cast<double>(words * sizeof(uint64_t)) /
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (sums[0] == 1) std::fprintf(stderr, " ");  // keeps the sums (and so the reads) alive
  return median(rates);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [--prompt-tokens N] [--decode-tokens N] [--threads N] [--repeats N]\n", argv[0]);
    return 2;
  }
  int prompt_tokens = 512, decode_tokens = 128, threads = 2, repeats = 3;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::stoi(argv[i + 1]);
    if (flag == "--prompt-tokens") prompt_tokens = value;
    else if (flag == "--decode-tokens") decode_tokens = value;
    else if (flag == "--threads") threads = value;
    else if (flag == "--repeats") repeats = value;
  }
  const std::unique_ptr<tern::backend::Backend> cpu = tern::backend::make_cpu_backend(threads);
  auto loaded = tern::model::Model::load(argv[1], *cpu);
  if (!loaded) {
    std::fprintf(stderr, "error: %s\n", loaded.error().message.c_str());
    return 1;
  }
  tern::model::Model& model = **loaded;
  // A fixed, ordinary prompt: the tokens of some English text, repeated to length.
  const auto text_tokens = model.tokenizer().encode(
      "The history of natural language processing generally started in the 1950s, although work can be found from "
      "earlier periods. In 1950, Alan Turing published an article titled Computing Machinery and Intelligence. ",
      {.add_special = false});
  std::vector<int32_t> prompt;
  while (static_cast<int>(prompt.size()) < prompt_tokens) prompt.push_back(text_tokens[prompt.size() % text_tokens.size()]);

  std::vector<double> prefill_rates, decode_rates;
  uint64_t prompt_regions = 0;
  double decode_regions = 0;
  for (int r = 0; r < repeats; ++r) {
    // The model's batched forward pass on one sequence (no scheduler): the kernels' speed alone.
    const int64_t num_blocks = (prompt_tokens + decode_tokens + 16 + 15) / 16;
    const std::unique_ptr<tern::backend::KvCache> cache = model.make_kv_cache(num_blocks, 16);
    std::vector<int32_t> block_table(static_cast<size_t>(num_blocks));
    for (int64_t b = 0; b < num_blocks; ++b) block_table[static_cast<size_t>(b)] = static_cast<int32_t>(b);
    tern::model::Batch batch;
    std::vector<float> logits;
    int32_t position = 0;
    const auto feed = [&](std::span<const int32_t> tokens) {
      for (size_t done = 0; done < tokens.size(); done += 512) {  // prompt chunks of 512, as the engine's default
        batch.clear();
        batch.block_tables = {std::span<const int32_t>(block_table)};
        const size_t count = std::min<size_t>(512, tokens.size() - done);
        for (size_t i = 0; i < count; ++i) batch.add(tokens[done + i], position++, 0, done + i + 1 == tokens.size());
        if (auto ok = model.forward(batch, *cache, logits); !ok) {
          std::fprintf(stderr, "error: %s\n", ok.error().message.c_str());
          std::exit(1);
        }
      }
    };
    auto start = std::chrono::steady_clock::now();
    const uint64_t regions_before_prompt = tern::kernels::ThreadPool::regions_started();
    feed(prompt);
    prompt_regions = tern::kernels::ThreadPool::regions_started() - regions_before_prompt;
    prefill_rates.push_back(prompt_tokens / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::vector<float> row(logits);
    start = std::chrono::steady_clock::now();
    const uint64_t regions_before_decode = tern::kernels::ThreadPool::regions_started();
    for (int i = 0; i < decode_tokens; ++i) {
      const int32_t token[] = {tern::engine::greedy_token(row)};
      feed(token);
      row.assign(logits.begin(), logits.end());
    }
    decode_rates.push_back(decode_tokens / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    decode_regions = static_cast<double>(tern::kernels::ThreadPool::regions_started() - regions_before_decode) / std::max(1, decode_tokens);
  }
  // Bytes a decode step reads: every weight matrix once, plus one embedding row (ignored: tiny); of a
  // mixture's experts, only the num_used of num_experts the router picks (the bound is that share).
  const tern::model::ModelConfig& config = model.config();
  uint64_t bytes_per_token = 0, expert_bytes = 0;
  for (const auto& tensor : model.file().tensors()) {
    if (tensor.name.ends_with("_exps.weight")) expert_bytes += tensor.data.size();
    else if (tensor.name != "token_embd.weight") bytes_per_token += tensor.data.size();
  }
  if (config.is_moe()) bytes_per_token += expert_bytes / static_cast<uint64_t>(config.num_experts) * static_cast<uint64_t>(config.num_experts_used);
  if (model.file().find_tensor("output.weight") == nullptr) bytes_per_token += model.weights().output.file_bytes();
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double bandwidth = copy_bandwidth_bytes_per_second();
  const double read_bandwidth = read_bandwidth_bytes_per_second(threads);
  std::printf("{\"prefill_tokens_per_second\": %.2f, \"decode_tokens_per_second\": %.2f, \"peak_rss_mib\": %.1f, "
              "\"bytes_per_decoded_token\": %llu, \"copy_bandwidth_gb_per_second\": %.2f, \"read_bandwidth_gb_per_second\": %.2f, "
              "\"parallel_regions_per_prompt\": %llu, \"parallel_regions_per_decoded_token\": %.1f}\n",
              median(prefill_rates), median(decode_rates), usage.ru_maxrss / 1024.0,
              static_cast<unsigned long long>(bytes_per_token), bandwidth / 1e9, read_bandwidth / 1e9,
              static_cast<unsigned long long>(prompt_regions), decode_regions);
  return 0;
}
