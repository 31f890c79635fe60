#include <cstdio>

#include "cli/commands.h"
#include "model/config.h"
#include "model/summary.h"

namespace tern::cli {

Runner add_pull_command(CLI::App& app) {
  auto* command = app.add_subcommand("pull", "Fetch a model into the cache ($TERN_HOME) and print its path");
  auto name = std::make_shared<std::string>();
  command->add_option("model", *name, "Model alias (see 'tern models')")->required();
  return [name]() {
    const models::CatalogEntry* entry = models::find_in_catalog(*name);
    if (entry == nullptr) {
      std::fprintf(stderr, "error: unknown model '%s'; 'tern models' lists the known ones\n", name->c_str());
      return 2;
    }
    auto path = models::pull(*entry, stderr_progress());
    if (!path) {
      std::fprintf(stderr, "error: %s\n", path.error().message.c_str());
      return 1;
    }
    std::printf("%s\n", path->c_str());
    return 0;
  };
}

Runner add_models_command(CLI::App& app) {
  auto* command = app.add_subcommand("models", "List the models tern can pull by name");
  (void)command;
  return []() {
    for (const models::CatalogEntry& entry : models::catalog()) {
      std::printf("%-14s %9s  %s%s\n", entry.alias.c_str(), models::format_bytes(entry.file_bytes).c_str(),
                  entry.description.c_str(), entry.alias == models::kDefaultModel ? "  [default]" : "");
    }
    // Any GGUF of these runs from its path ('tern inspect FILE' says whether one does, or what is missing).
    std::printf("\narchitectures tern runs (any GGUF of them, by path): %s\n",
                fmt::format("{}", fmt::join(model::supported_architectures(), ", ")).c_str());
    return 0;
  };
}

}  // namespace tern::cli
