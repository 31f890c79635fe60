#pragma once
// Subcommands of the `tern` binary. Each registers its options on the CLI11 app and returns a function
// that runs it once parsing succeeded; the function returns the process exit code.

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "gguf/gguf_file.h"
#include "model/catalog.h"

namespace tern::cli {

using Runner = std::function<int()>;

Runner add_pull_command(CLI::App& app);
Runner add_models_command(CLI::App& app);
Runner add_inspect_command(CLI::App& app);
Runner add_tokenize_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_run_command(CLI::App& app);
Runner add_chat_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);
Runner add_keys_command(CLI::App& app);
Runner add_usage_command(CLI::App& app);

/// Progress on stderr: a redrawn line on a terminal, one line per stage otherwise (logs stay short).
models::ProgressFn stderr_progress();

/// Resolves a model argument (alias or path), pulling with progress when needed; prints the error and
/// returns empty on failure.
std::optional<std::string> resolve_model_or_report(const std::string& name_or_path);

/// Resolves and opens a model's GGUF file; prints the error and returns empty on failure.
std::optional<gguf::GgufFile> open_model_or_report(const std::string& name_or_path);

}  // namespace tern::cli
