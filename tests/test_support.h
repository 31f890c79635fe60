#pragma once

#include <algorithm>
// Helpers shared by the tests: where fixtures and the real models are.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "model/catalog.h"

namespace tern::testing {

inline std::string data_path(const std::string& relative) { return std::string(TERN_TEST_DATA_DIR) + "/" + relative; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// Path of a catalog model in the cache. The test command (scripts/test.sh) pulls both real models
/// first, so a missing one is a set-up error and fails the test rather than skipping it.
inline std::string model_path(const std::string& alias) {
  const models::CatalogEntry* entry = models::find_in_catalog(alias);
  if (entry == nullptr) return {};
  return models::tern_home() + "/models/" + entry->file_name;
}

/// Path of a file scripts/test.sh made in the fixture cache.
inline std::string fixture_path(const std::string& file) { return models::tern_home() + "/fixtures/" + file; }

/// Path of a catalog model, or of a random-weight fixture ("<arch>-random", made by scripts/test.sh
/// with tools/make_random_models.py) in the cache.
inline std::string model_or_fixture_path(const std::string& name) {
  if (name.ends_with("-random")) return models::tern_home() + "/fixtures/" + name + ".gguf";
  return model_path(name);
}

/// A model name as a gtest parameter name (which may not hold '-').
inline std::string param_name(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

#define TERN_REQUIRE_MODEL(path_var, alias)                                                             \
  const std::string path_var = ::tern::testing::model_path(alias);                                       \
  if (!std::filesystem::exists(path_var)) {                                                             \
    FAIL() << "model " << alias << " is not in the cache (" << path_var << "); run `build/tern pull " \
           << alias << "` or scripts/test.sh";                                                          \
  }

}  // namespace tern::testing
