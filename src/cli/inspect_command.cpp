#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/summary.h"

namespace tern::cli {
namespace {

void print_summary(const models::ModelSummary& s, size_t template_lines) {
  auto line = [](const char* label, const std::string& value) { std::printf("%-18s %s\n", label, value.c_str()); };
  auto optional = [](const std::optional<uint64_t>& v) { return v ? std::to_string(*v) : std::string("-"); };
  line("file", fmt::format("{} (GGUF v{}, {})", s.path, s.gguf_version, models::format_bytes(s.file_bytes)));
  line("name", s.name.empty() ? "-" : s.name);
  line("architecture", s.architecture.empty() ? "-" : s.architecture);
  line("parameters", fmt::format("{} ({})", models::format_count(s.num_parameters), s.num_parameters));
  std::string mix;
  for (const models::TypeShare& share : s.type_mix) {
    mix += fmt::format("{}{} {:.1f}% ({} tensors)", mix.empty() ? "" : ", ", share.type,
                       100.0 * share.bytes / std::max<uint64_t>(1, s.weight_bytes), share.num_tensors);
  }
  line("quantization", mix);
  line("context length", optional(s.context_length));
  line("layers", fmt::format("{} (embedding {}, heads {}, kv heads {})", optional(s.num_layers),
                             optional(s.embedding_length), optional(s.num_heads), optional(s.num_kv_heads)));
  line("vocabulary", fmt::format("{} tokens, {} ({}{})", s.vocab_size, s.tokenizer_kind, s.tokenizer_model,
                                 s.pre_tokenizer.empty() ? "" : ", pre-tokenizer " + s.pre_tokenizer));
  std::string specials;
  for (const models::SpecialToken& token : s.special_tokens) {
    specials += fmt::format("{}{} {} '{}'", specials.empty() ? "" : ", ", token.role, token.id, token.text);
  }
  line("special tokens", specials.empty() ? "-" : specials);
  std::string memory = fmt::format("{} weights", models::format_bytes(s.weight_bytes));
  if (s.kv_bytes_per_token) {
    memory += fmt::format(" + {} KV cache per 1K tokens (F16)", models::format_bytes(*s.kv_bytes_per_token * 1024));
    if (s.context_length) {
      memory += fmt::format("; {} at full context", models::format_bytes(s.weight_bytes + *s.kv_bytes_per_token * *s.context_length));
    }
  }
  line("memory to load", memory);
  if (s.chat_template.empty()) {
    line("chat template", "(none)");
    return;
  }
  std::istringstream lines(s.chat_template);
  std::string text;
  size_t count = 0;
  size_t total = 1;
  for (char c : s.chat_template) total += c == '\n';
  std::printf("chat template      %zu lines, %zu bytes:\n", total, s.chat_template.size());
  while (count < template_lines && std::getline(lines, text)) {
    if (text.size() > 120) text = text.substr(0, 117) + "...";
    std::printf("  | %s\n", text.c_str());
    ++count;
  }
  if (total > count) std::printf("  | ... (%zu more lines)\n", total - count);
}

}  // namespace

Runner add_inspect_command(CLI::App& app) {
  auto* command = app.add_subcommand("inspect", "Describe a model: architecture, size, quantization, tokenizer");
  struct Options {
    std::string model{models::kDefaultModel};
    size_t template_lines = 6;
    bool show_metadata = false;
    bool show_tensors = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("model", options->model, "Model alias or .gguf path")->capture_default_str();
  command->add_option("--template-lines", options->template_lines, "Chat template lines to show")->capture_default_str();
  command->add_flag("--metadata", options->show_metadata, "Also list every metadata entry");
  command->add_flag("--tensors", options->show_tensors, "Also list every tensor");
  return [options]() {
    auto file = open_model_or_report(options->model);
    if (!file) return 1;
    print_summary(models::summarize(*file), options->template_lines);
    // Whether tern runs it, by the same checks as loading (no weights are read).
    if (auto runnable = model::check_runnable(*file)) std::printf("%-18s %s\n", "runs in tern", "yes");
    else std::printf("%-18s no: %s\n", "runs in tern", runnable.error().message.c_str());
    if (options->show_metadata) {
      std::printf("\nmetadata (%zu entries):\n", file->metadata().size());
      for (const auto& [key, value] : file->metadata()) {
        std::printf("  %-45.*s %s\n", static_cast<int>(key.size()), key.data(), value.to_display_string().c_str());
      }
    }
    if (options->show_tensors) {
      std::printf("\ntensors (%zu):\n", file->tensors().size());
      for (const gguf::TensorInfo& tensor : file->tensors()) {
        std::string shape;
        for (uint64_t dim : tensor.shape) shape += fmt::format("{}{}", shape.empty() ? "" : " x ", dim);
        std::printf("  %-40.*s %-6s %-18s %s\n", static_cast<int>(tensor.name.size()), tensor.name.data(),
                    std::string(dtype_info(tensor.type).name).c_str(), shape.c_str(),
                    models::format_bytes(tensor.data.size()).c_str());
      }
    }
    return 0;
  };
}

}  // namespace tern::cli
