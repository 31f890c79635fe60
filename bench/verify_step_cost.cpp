// What verifying k guessed tokens costs (speculative decoding, engine/spec/proposer.h): the forward
// pass of one sequence's chunk of 1 + k rows, every row with logits, at a given depth, against the
// one-row decode step. On a memory-bound decode the weights are read once for all rows, so the extra
// rows cost a fraction of a step; this is the curve the scheduler's step-time model learns.
//
//   verify_step_cost MODEL.gguf [--depth 512] [--max-rows 9] [--threads 2] [--repeats 30]
// prints one JSON line per row count: median seconds of the step and its ratio to the one-row step.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: verify_step_cost MODEL.gguf [--depth 512] [--max-rows 9] [--threads 2] [--repeats 30]\n");
    return 2;
  }
  int depth = 512, max_rows = 9, threads = 2, repeats = 30;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--depth") depth = value;
    else if (flag == "--max-rows") max_rows = value;
    else if (flag == "--threads") threads = value;
    else if (flag == "--repeats") repeats = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const auto backend = tern::backend::make_cpu_backend(threads);
  auto loaded = tern::model::Model::load(argv[1], *backend);
  if (!loaded) {
    std::fprintf(stderr, "error: %s\n", loaded.error().message.c_str());
    return 1;
  }
  tern::model::Model& model = **loaded;
  const auto text = model.tokenizer().encode(
      "The history of natural language processing generally started in the 1950s, although work can be found from "
      "earlier periods. In 1950, Alan Turing published an article titled Computing Machinery and Intelligence. ",
      {.add_special = false});
  const int64_t num_blocks = (depth + max_rows + 15) / 16 + 1;
  const auto cache = model.make_kv_cache(num_blocks, 16);
  std::vector<int32_t> block_table(static_cast<size_t>(num_blocks));
  for (int64_t b = 0; b < num_blocks; ++b) block_table[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  tern::model::Batch batch;
  std::vector<float> logits;
  const auto run = [&](int first, int count, bool all_logits) {
    batch.clear();
    batch.block_tables = {std::span<const int32_t>(block_table)};
    for (int i = 0; i < count; ++i) {
      batch.add(text[static_cast<size_t>(first + i) % text.size()], first + i, 0, all_logits || i + 1 == count);
    }
    if (auto ok = model.forward(batch, *cache, logits); !ok) {
      std::fprintf(stderr, "error: %s\n", ok.error().message.c_str());
      std::exit(1);
    }
  };
  for (int done = 0; done < depth; done += 512) run(done, std::min(512, depth - done), false);
  double one_row = 0;
  for (int rows = 1; rows <= max_rows; ++rows) {
    std::vector<double> times;
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      run(depth, rows, true);  // the same positions every time: the K/V written there are overwritten
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    const double seconds = median(times);
    if (rows == 1) one_row = seconds;
    std::printf("{\"model\": \"%s\", \"depth\": %d, \"rows\": %d, \"threads\": %d, \"step_ms\": %.3f, \"vs_one_row\": %.3f}\n",
                model.file().name().c_str(), depth, rows, threads, seconds * 1e3, seconds / one_row);
  }
  return 0;
}
