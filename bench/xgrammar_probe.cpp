// Does xgrammar's C++ API fit tern's tokenizer (issue 29, item 3)? Decoded vocab as RAW bytes,
// a JSON Schema compiled (cold and cached), and the per-token bitmask time on a random walk through
// the allowed tokens, which must end in output valid against the schema. Not built by CMake yet:
//   tools/build_xgrammar.sh && X=build-deps/xgrammar B=build/src && g++ -std=c++23 -O2 -Isrc -I$X/include \
//     bench/xgrammar_probe.cpp -o build/xgrammar_probe $B/tokenizer/libtern_tokenizer.a $B/gguf/libtern_gguf.a \
//     $B/tensor/libtern_tensor.a $B/util/libtern_util.a $X/lib/libxgrammar.a -lfmt -lpcre2-8 -lpthread
//   build/xgrammar_probe ~/.cache/tern/models/SmolLM2-135M-Instruct.Q4_1.gguf
#include <xgrammar/xgrammar.h>
#include <dlpack/dlpack.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

using namespace tern;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  auto file = gguf::GgufFile::open(argv[1]);
  if (!file) return std::printf("%s\n", file.error().message.c_str()), 1;
  auto tok = tok::Tokenizer::from_gguf(*file);
  if (!tok) return std::printf("%s\n", tok.error().message.c_str()), 1;
  const int vocab = static_cast<int>(tok->vocab().size());
  std::vector<std::string> decoded(vocab);
  for (int i = 0; i < vocab; ++i) decoded[i] = tok->token_bytes(i);  // control tokens: "" (never allowed)
  std::vector<int32_t> stops;
  if (tok->vocab().eos) stops.push_back(*tok->vocab().eos);
  auto t0 = Clock::now();
  xgrammar::TokenizerInfo info(decoded, xgrammar::VocabType::RAW, vocab, stops);
  xgrammar::GrammarCompiler compiler(info, 1, true);
  auto t1 = Clock::now();
  const std::string schema = R"({"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer","minimum":0,"maximum":150},
    "tags":{"type":"array","items":{"enum":["a","b","c"]},"minItems":1,"maxItems":3}},"required":["name","age","tags"],"additionalProperties":false})";
  auto compiled = compiler.CompileJSONSchema(schema, false);
  auto t2 = Clock::now();
  auto cached = compiler.CompileJSONSchema(schema, false);
  auto t3 = Clock::now();
  xgrammar::GrammarMatcher matcher(compiled);
  const int words = (vocab + 31) / 32;
  std::vector<int32_t> bits(words);
  int64_t shape[1] = {words};
  DLTensor tensor{bits.data(), DLDevice{kDLCPU, 0}, 1, DLDataType{kDLInt, 32, 1}, shape, nullptr, 0};
  std::mt19937 rng(7);
  std::string out;
  double mask_s = 0;
  int steps = 0;
  while (!matcher.IsTerminated() && steps < 200) {
    auto m0 = Clock::now();
    matcher.FillNextTokenBitmask(&tensor);
    mask_s += std::chrono::duration<double>(Clock::now() - m0).count();
    std::vector<int> allowed;
    for (int i = 0; i < vocab; ++i) if (bits[i / 32] >> (i % 32) & 1) allowed.push_back(i);
    if (allowed.empty()) { std::printf("dead end\n"); break; }
    const int token = allowed[rng() % allowed.size()];
    if (!matcher.AcceptToken(token)) { std::printf("refused %d\n", token); break; }
    if (std::find(stops.begin(), stops.end(), token) == stops.end()) out += decoded[token];
    ++steps;
  }
  std::printf("vocab %d: tokenizer info + compiler %.1f ms, schema compile %.1f ms (cached %.3f ms), %d steps, mask %.3f ms/token\n",
              vocab, std::chrono::duration<double, std::milli>(t1 - t0).count(), std::chrono::duration<double, std::milli>(t2 - t1).count(),
              std::chrono::duration<double, std::milli>(t3 - t2).count(), steps, 1000 * mask_s / std::max(steps, 1));
  // The schema's own checks, by hand (no validator in C++ here): what the mask must have guaranteed.
  const auto j = nlohmann::json::parse(out, nullptr, false);
  const bool valid = j.is_object() && j.size() == 3 && j["name"].is_string() && j["age"].is_number_integer() && j["age"] >= 0 &&
                     j["age"] <= 150 && j["tags"].is_array() && !j["tags"].empty() && j["tags"].size() <= 3 &&
                     std::all_of(j["tags"].begin(), j["tags"].end(), [](const auto& t) { return t == "a" || t == "b" || t == "c"; });
  std::printf("output (%s): %s\n", valid ? "valid" : "INVALID", out.c_str());
  return valid ? 0 : 1;
  return 0;
}
