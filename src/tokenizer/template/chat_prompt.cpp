#include "tokenizer/template/chat_prompt.h"

namespace tern::chat {

Result<std::vector<tok::TokenId>> encode_chat(const ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) {
  const tok::Vocab& vocab = tokenizer.vocab();
  const std::string bos = vocab.bos ? vocab.tokens[static_cast<size_t>(*vocab.bos)] : "";
  const std::string eos = vocab.eos ? vocab.tokens[static_cast<size_t>(*vocab.eos)] : "";
  auto text = chat_template.render(nlohmann::ordered_json{{"messages", messages},
                                                          {"tools", tools},
                                                          {"add_generation_prompt", true},
                                                          {"bos_token", bos},
                                                          {"eos_token", eos}});
  if (!text) return std::unexpected(text.error());
  // As in llama.cpp's server, a user who types turn markers in a message can forge a turn.
  const bool template_has_bos = !bos.empty() && text->starts_with(bos);
  return tokenizer.encode(*text, {.add_special = !template_has_bos, .parse_special = true});
}

}  // namespace tern::chat
