#pragma once
// Runs a program with an argument vector (no shell, so no quoting or injection issues).

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace tern {

struct SubprocessOptions {
  /// Append the child's stdout to this file instead of inheriting ours.
  std::optional<std::string> stdout_append_path;
  /// Send the child's stdout and stderr to /dev/null.
  bool quiet = false;
};

/// Runs argv[0] (looked up on PATH) and waits. Returns its exit status; an Error if it could not be
/// started or was killed by a signal.
Result<int> run_subprocess(const std::vector<std::string>& argv, const SubprocessOptions& options = {});

/// Whether `program` is found on PATH.
bool program_on_path(const std::string& program);

}  // namespace tern
