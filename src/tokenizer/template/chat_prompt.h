#pragma once
// A conversation as a model reads it: rendered through its chat template the way Hugging Face does
// (bos_token / eos_token text, tools = None, add_generation_prompt), then tokenized with special-token
// text recognised (the template's turn markers must be). BOS is added only when the template did not
// write it itself. Shared by `tern chat` and `tern serve`.

#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace tern::chat {

/// An error is the template's own (a raise_exception, a type error), naming its line. `tools`: the
/// template's `tools` (OpenAI's tools array), null for none.
Result<std::vector<tok::TokenId>> encode_chat(const ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools = nullptr);

}  // namespace tern::chat
