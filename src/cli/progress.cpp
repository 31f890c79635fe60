#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"

namespace tern::cli {

models::ProgressFn stderr_progress() {
  struct State {
    std::string last_stage;
    int last_percent = -1;
  };
  auto state = std::make_shared<State>();
  const bool is_terminal = ::isatty(STDERR_FILENO) == 1;
  return [state, is_terminal](std::string_view stage, uint64_t done, uint64_t total) {
    const int percent = total > 0 ? static_cast<int>(done * 100 / total) : -1;
    const bool new_stage = stage != state->last_stage;
    if (is_terminal) {
      if (new_stage && !state->last_stage.empty()) std::fputc('\n', stderr);
      if (percent >= 0) {
        std::fprintf(stderr, "\r%.*s %3d%% (%.1f / %.1f MiB)", static_cast<int>(stage.size()), stage.data(),
                     percent, done / 1048576.0, total / 1048576.0);
      } else {
        std::fprintf(stderr, "\r%.*s...", static_cast<int>(stage.size()), stage.data());
      }
      if (percent == 100) std::fputc('\n', stderr);
    } else if (new_stage || (percent >= 0 && percent / 25 != state->last_percent / 25)) {
      if (percent >= 0) {
        std::fprintf(stderr, "%.*s %d%%\n", static_cast<int>(stage.size()), stage.data(), percent);
      } else {
        std::fprintf(stderr, "%.*s...\n", static_cast<int>(stage.size()), stage.data());
      }
    }
    std::fflush(stderr);
    state->last_stage = stage;
    state->last_percent = percent;
  };
}

std::optional<std::string> resolve_model_or_report(const std::string& name_or_path) {
  auto path = models::resolve_model(name_or_path, stderr_progress());
  if (!path) {
    std::fprintf(stderr, "error: %s\n", path.error().message.c_str());
    return std::nullopt;
  }
  return *path;
}

}  // namespace tern::cli

namespace tern::cli {

std::optional<gguf::GgufFile> open_model_or_report(const std::string& name_or_path) {
  auto path = resolve_model_or_report(name_or_path);
  if (!path) return std::nullopt;
  auto file = gguf::GgufFile::open(*path);
  if (!file) {
    std::fprintf(stderr, "error: %s\n", file.error().message.c_str());
    return std::nullopt;
  }
  return std::move(*file);
}

}  // namespace tern::cli
