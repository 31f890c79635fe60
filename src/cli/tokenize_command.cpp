#include <cstdio>
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace tern::cli {

Runner add_tokenize_command(CLI::App& app) {
  auto* command = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  struct Options {
    std::string model{models::kDefaultModel};
    std::optional<std::string> text;
    bool special = false;
    bool no_bos = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("-m,--model", options->model, "Model alias or .gguf path")->capture_default_str();
  command->add_option("text", options->text, "Text to tokenize (default: read stdin)");
  command->add_flag("--special", options->special, "Recognise special-token text such as <|im_start|>");
  command->add_flag("--no-bos", options->no_bos, "Do not add BOS/EOS even if the model asks for them");
  return [options]() {
    auto file = open_model_or_report(options->model);
    if (!file) return 1;
    auto tokenizer = tok::Tokenizer::from_gguf(*file);
    if (!tokenizer) {
      std::fprintf(stderr, "error: %s\n", tokenizer.error().message.c_str());
      return 1;
    }
    std::string text;
    if (options->text) {
      text = *options->text;
    } else {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    tok::EncodeOptions encode;
    encode.add_special = !options->no_bos;
    encode.parse_special = options->special;
    std::string out = "[";
    for (tok::TokenId id : tokenizer->encode(text, encode)) out += fmt::format("{}{}", out.size() > 1 ? ", " : "", id);
    std::printf("%s]\n", out.c_str());
    return 0;
  };
}

}  // namespace tern::cli
