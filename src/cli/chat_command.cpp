// `tern chat`: an interactive conversation through the model's own chat template. Each turn renders
// the whole conversation, and the KV cache of the common prefix is reused, so only the new turn is
// computed. Ctrl-C stops the reply being generated; at the prompt it (or Ctrl-D, or /exit) quits.

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/generation.h"
#include "tokenizer/template/chat_prompt.h"

namespace tern::cli {
namespace {

std::atomic<bool> g_generating{false};
std::atomic<bool> g_stop{false};

void on_interrupt(int) {
  if (g_generating.load()) {
    g_stop.store(true);
  } else {
    const char newline = '\n';
    (void)!::write(STDOUT_FILENO, &newline, 1);
    std::_Exit(130);
  }
}

}  // namespace

Runner add_chat_command(CLI::App& app) {
  auto* command = app.add_subcommand("chat", "Chat with a model in the terminal, through its chat template");
  auto options = std::make_shared<GenerationOptions>();
  auto system_prompt = std::make_shared<std::string>();
  auto template_file = std::make_shared<std::string>();
  add_generation_options(*command, *options);
  command->add_option("-s,--system", *system_prompt, "System message");
  command->add_option("--template", *template_file, "Jinja chat template file (default: the model's)");
  return [options, system_prompt, template_file]() {
    auto session = GenerationSession::create(*options);
    if (!session) {
      std::fprintf(stderr, "error: %s\n", session.error().message.c_str());
      return 1;
    }
    model::Model& model = (*session)->model();
    auto source = model::chat_template_source(model, *template_file);
    if (!source) {
      std::fprintf(stderr, "error: %s\n", source.error().message.c_str());
      return 1;
    }
    auto chat_template = chat::ChatTemplate::parse(*source);
    if (!chat_template) {
      std::fprintf(stderr, "error: %s\n", chat_template.error().message.c_str());
      return 1;
    }
    std::signal(SIGINT, on_interrupt);
    const bool interactive = ::isatty(STDIN_FILENO) == 1;
    if (interactive) std::fprintf(stderr, "Type a message; Ctrl-C stops a reply; /reset clears the conversation; /exit or Ctrl-D quits.\n");

    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!system_prompt->empty()) messages.push_back({{"role", "system"}, {"content", *system_prompt}});
    std::string line;
    for (;;) {
      if (interactive) std::printf("> "), std::fflush(stdout);
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line.empty()) continue;
      if (line == "/reset") {
        messages.erase(messages.begin() + (system_prompt->empty() ? 0 : 1), messages.end());
        continue;
      }
      messages.push_back({{"role", "user"}, {"content", line}});
      auto ids = chat::encode_chat(*chat_template, model.tokenizer(), messages);
      if (!ids) {
        std::fprintf(stderr, "error: %s\n", ids.error().message.c_str());
        messages.erase(messages.end() - 1);
        continue;
      }
      std::string reply;
      g_stop = false;
      g_generating = true;
      auto stats = (*session)->generate(*ids, [&](std::string_view text) {
        reply += text;
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }, &g_stop);
      g_generating = false;
      std::printf("\n");
      if (!stats) {
        std::fprintf(stderr, "error: %s\n", stats.error().message.c_str());
        messages.erase(messages.end() - 1);
        continue;
      }
      if (stats->finish_reason == "interrupted") std::fprintf(stderr, "[stopped]\n");
      messages.push_back({{"role", "assistant"}, {"content", reply}});
    }
    return 0;
  };
}

}  // namespace tern::cli
