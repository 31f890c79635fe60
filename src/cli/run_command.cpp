#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/generation.h"

namespace tern::cli {

Runner add_run_command(CLI::App& app) {
  auto* command = app.add_subcommand("run", "Generate a continuation of a prompt, streamed, then print speeds");
  auto options = std::make_shared<GenerationOptions>();
  auto prompt = std::make_shared<std::string>();
  command->add_option("-p,--prompt", *prompt, "Prompt text")->required();
  add_generation_options(*command, *options);
  return [options, prompt]() {
    auto session = GenerationSession::create(*options);
    if (!session) {
      std::fprintf(stderr, "error: %s\n", session.error().message.c_str());
      return 1;
    }
    const auto ids = (*session)->model().tokenizer().encode(*prompt, {.add_special = true, .parse_special = options->parse_special});
    auto stats = (*session)->generate(ids, [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    std::printf("\n");
    if (!stats) {
      std::fprintf(stderr, "error: %s\n", stats.error().message.c_str());
      return 1;
    }
    print_stats(*stats);
    return 0;
  };
}

}  // namespace tern::cli
