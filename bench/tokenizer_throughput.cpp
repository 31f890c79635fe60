// Encode throughput of tern's tokenizer on a text file: the C++ half of bench/tokenizer_vs_llamacpp.py,
// which runs llama.cpp's tokenizer on the same text in the same run and prints the ratio.
//
//   tokenizer_throughput MODEL.gguf TEXT_FILE [REPEATS]
// prints one JSON line: {"tokens": N, "bytes": B, "seconds": [..], "median_seconds": s}

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TEXT_FILE [REPEATS]\n", argv[0]);
    return 2;
  }
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 5;
  auto file = tern::gguf::GgufFile::open(argv[1]);
  if (!file) {
    std::fprintf(stderr, "error: %s\n", file.error().message.c_str());
    return 1;
  }
  auto tokenizer = tern::tok::Tokenizer::from_gguf(*file);
  if (!tokenizer) {
    std::fprintf(stderr, "error: %s\n", tokenizer.error().message.c_str());
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  std::vector<double> seconds;
  size_t num_tokens = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const auto ids = tokenizer->encode(text, {.add_special = true, .parse_special = false});
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    num_tokens = ids.size();
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"tokens\": %zu, \"bytes\": %zu, \"seconds\": [", num_tokens, text.size());
  for (size_t i = 0; i < seconds.size(); ++i) std::printf("%s%.6f", i ? ", " : "", seconds[i]);
  std::printf("], \"median_seconds\": %.6f}\n", sorted[sorted.size() / 2]);
  return 0;
}
