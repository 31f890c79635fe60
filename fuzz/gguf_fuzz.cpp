// Mutation fuzzer for everything that reads an untrusted GGUF file: the reader, the model summary
// (`tern inspect`) and the tokenizer built from the file's metadata; and the safetensors reader (PEFT
// LoRA adapters), which gets every input too, from a safetensors seed of its own among the others.
//
// clang's libFuzzer would be the first choice, but Debian 12's clang 14 cannot compile libstdc++ 12's
// <expected>, so this is a seeded mutation loop built with GCC under AddressSanitizer and
// UndefinedBehaviorSanitizer: any out-of-bounds read, overflow or crash aborts the run, and the
// input that caused it is written to gguf-crash-*.gguf first.
//
//   gguf_fuzz [--seconds N] [--seed S] [SEED_FILE...]   mutate the built-in seeds and the files given
//   gguf_fuzz --replay FILE...                          run files once (to reproduce a crash)

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/safetensors.h"
#include "gguf_builder.h"
#include "model/summary.h"
#include "tokenizer/tokenizer.h"

extern "C" void __sanitizer_set_death_callback(void (*callback)());

namespace {

std::vector<uint8_t> g_current;  // the input being run, saved if a sanitizer kills us
uint64_t g_num_parsed = 0;      // inputs the reader accepted
uint64_t g_num_tokenized = 0;   // inputs that also yielded a tokenizer
uint64_t g_num_safetensors = 0; // inputs the safetensors reader accepted
uint64_t g_checksum = 0;        // every byte of the tensors it vouched for, read

void save_current_input() {
  const std::string name = "gguf-crash-" + std::to_string(std::random_device{}()) + ".gguf";
  std::ofstream(name, std::ios::binary).write(reinterpret_cast<const char*>(g_current.data()), g_current.size());
  std::fprintf(stderr, "crashing input saved to %s\n", name.c_str());
}

void run_one(const std::vector<uint8_t>& bytes) {
  if (auto tensors = tern::gguf::SafetensorsFile::parse(bytes, "fuzz.safetensors")) {
    ++g_num_safetensors;
    for (const auto& [name, t] : tensors->tensors()) {
      for (uint8_t b : t.data) g_checksum += b;
    }
  }
  auto file = tern::gguf::GgufFile::parse(bytes, "fuzz.gguf");
  if (!file) return;
  ++g_num_parsed;
  (void)tern::models::summarize(*file);
  for (const auto& [key, value] : file->metadata()) (void)value.to_display_string();
  auto tokenizer = tern::tok::Tokenizer::from_gguf(*file);
  if (!tokenizer) return;
  ++g_num_tokenized;
  const auto ids = tokenizer->encode("Hello <|im_start|> wörld 123 😀\n\n", {.add_special = true, .parse_special = true});
  (void)tokenizer->decode(ids, true);
}

std::vector<std::vector<uint8_t>> builtin_seeds() {
  using tern::testing::GgufBuilder;
  std::vector<std::vector<uint8_t>> seeds;
  const std::vector<std::string> bpe_tokens = {"<|endoftext|>", "<|im_start|>", "H", "e", "l", "o", "Ġ", "w", "r", "d",
                                               "He", "ll", "Hell", "Hello", "Ġw", "Ġwo", "1", "2", "3", "ö"};
  GgufBuilder bpe;
  bpe.kv_string("general.architecture", "llama").kv_u32("llama.context_length", 128)
      .kv_u32("llama.block_count", 1).kv_u32("llama.embedding_length", 32).kv_u32("llama.attention.head_count", 2)
      .kv_string("tokenizer.ggml.model", "gpt2").kv_string("tokenizer.ggml.pre", "smollm")
      .kv_string_array("tokenizer.ggml.tokens", bpe_tokens)
      .kv_i32_array("tokenizer.ggml.token_type", {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
      .kv_string_array("tokenizer.ggml.merges", {"H e", "l l", "He ll", "Hell o", "Ġ w", "Ġw o"})
      .kv_u32("tokenizer.ggml.bos_token_id", 1).kv_bool("tokenizer.ggml.add_bos_token", true)
      .kv_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}")
      .tensor("f32", {8}, 0, std::string(32, '\1')).tensor("q4_0", {32, 2}, 2, std::string(36, '\2'))
      .tensor("q6_k", {256}, 14, std::string(210, '\3'));
  seeds.push_back(bpe.bytes());
  GgufBuilder spm;
  spm.kv_string("general.architecture", "gemma3").kv_u32("general.alignment", 64)
      .kv_string("tokenizer.ggml.model", "llama")
      .kv_string_array("tokenizer.ggml.tokens", {"<pad>", "<bos>", "<0x0A>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\n\n"})
      .kv_f32_array("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -0.5f, -0.25f, 0})
      .kv_i32_array("tokenizer.ggml.token_type", {3, 3, 6, 1, 1, 1, 1, 1, 4})
      .kv_u32("tokenizer.ggml.bos_token_id", 1).kv_u32("tokenizer.ggml.unknown_token_id", 0)
      .tensor("bf16", {4, 4}, 30, std::string(32, '\4')).tensor("q8_0", {32}, 8, std::string(34, '\5'));
  seeds.push_back(spm.bytes());
  // A PEFT adapter's safetensors: 8-byte header length, JSON header, data.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a.lora_A.weight":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("a.lora_B.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[12,36]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[36,38]}})";
  std::vector<uint8_t> safetensors(8);
  const uint64_t length = header.size();
  std::memcpy(safetensors.data(), &length, 8);
  safetensors.insert(safetensors.end(), header.begin(), header.end());
  safetensors.resize(safetensors.size() + 38, 0x3c);
  seeds.push_back(safetensors);
  return seeds;
}

uint64_t interesting_value(std::mt19937_64& rng) {
  static const uint64_t kValues[] = {0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 33, 255, 256, 0x7FFF, 0xFFFF, 0x10000,
                                     0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000ull, 0x7FFFFFFFFFFFFFFFull,
                                     0x8000000000000000ull, ~0ull, ~0ull - 1};
  return kValues[rng() % std::size(kValues)];
}

void mutate(std::vector<uint8_t>& data, std::mt19937_64& rng) {
  const int num_mutations = 1 + static_cast<int>(rng() % 6);
  for (int m = 0; m < num_mutations && !data.empty(); ++m) {
    // Bias positions toward the start, where the header, counts and lengths are.
    const size_t limit = (rng() % 2 == 0) ? std::min<size_t>(data.size(), 512) : data.size();
    const size_t at = rng() % limit;
    switch (rng() % 7) {
      case 0: data[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
      case 1: data[at] = static_cast<uint8_t>(rng()); break;
      case 2: {
        const uint64_t value = interesting_value(rng);
        const size_t width = (rng() % 2 == 0) ? 4 : 8;
        if (at + width <= data.size()) std::memcpy(&data[at], &value, width);
        break;
      }
      case 3: data.resize(at); break;
      case 4: {
        const size_t length = std::min<size_t>(1 + rng() % 64, data.size() - at);
        data.erase(data.begin() + static_cast<long>(at), data.begin() + static_cast<long>(at + length));
        break;
      }
      case 5: {
        const size_t length = std::min<size_t>(1 + rng() % 64, data.size() - at);
        std::vector<uint8_t> chunk(data.begin() + static_cast<long>(at), data.begin() + static_cast<long>(at + length));
        const size_t to = rng() % data.size();
        data.insert(data.begin() + static_cast<long>(to), chunk.begin(), chunk.end());
        break;
      }
      case 6: {  // small arithmetic on a 64-bit field
        if (at + 8 <= data.size()) {
          uint64_t value;
          std::memcpy(&value, &data[at], 8);
          value += static_cast<int64_t>(rng() % 65) - 32;
          std::memcpy(&data[at], &value, 8);
        }
        break;
      }
    }
  }
}

std::vector<uint8_t> read_prefix(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(max_bytes);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(max_bytes));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  __sanitizer_set_death_callback(save_current_input);
  double seconds = 30;
  uint64_t seed = 1;
  bool replay = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) seconds = std::stod(argv[++i]);
    else if (arg == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else if (arg == "--replay") replay = true;
    else files.push_back(arg);
  }
  if (replay) {
    for (const std::string& path : files) {
      g_current = read_prefix(path, 1ull << 32);
      run_one(g_current);
      std::printf("%s: ok\n", path.c_str());
    }
    return 0;
  }
  std::vector<std::vector<uint8_t>> seeds = builtin_seeds();
  // Real models: their metadata plus the first tensors (the tensor table's tail is cut, which the
  // reader must reject cleanly; mutations of the header still reach the full metadata paths).
  for (const std::string& path : files) seeds.push_back(read_prefix(path, 8u << 20));
  for (const auto& s : seeds) {
    g_current = s;
    run_one(s);
  }

  std::mt19937_64 rng(seed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t iterations = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    // Small built-in seeds most of the time: they run thousands of times faster than a real header.
    const size_t pick = (rng() % 16 == 0 || seeds.size() <= 2) ? rng() % seeds.size() : rng() % 2;
    g_current = seeds[pick];
    mutate(g_current, rng);
    run_one(g_current);
    ++iterations;
  }
  std::printf("gguf_fuzz: %llu inputs in %.0f s (seed %llu): %llu parsed, %llu built a tokenizer, %llu safetensors parsed; no crash\n",
              static_cast<unsigned long long>(iterations), seconds, static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(g_num_parsed), static_cast<unsigned long long>(g_num_tokenized),
              static_cast<unsigned long long>(g_num_safetensors + (g_checksum & 0)));
  return 0;
}
