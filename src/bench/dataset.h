#pragma once
// Prompt datasets with real text (`tern bench --dataset FILE`): conversations in ShareGPT's shape or
// OpenAI's, or plain prompts, as a JSON array or JSON Lines:
//
//   {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}, ...]}   ShareGPT
//   {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}     OpenAI
//   {"prompt": "...", "output_tokens": 120}      plain ("max_tokens" or a "completion" text also say how long)
//
// A conversation's user turns are sent as one session's turns, each after the previous answer (the
// server's own answer goes into the history, as a real client's would); each turn asks for as many
// tokens as the dataset's reply to it had (else the workload's output length). A system message
// (ShareGPT "system", OpenAI "system") opens the session. Sessions take the conversations in an order
// shuffled by the seed, cycling when the run needs more.

#include <memory>
#include <string>
#include <vector>

#include "bench/prompt_builder.h"
#include "util/result.h"

namespace tern::bench {

struct DatasetTurn {
  std::string user;        ///< what the user says
  std::string reference;   ///< the dataset's reply (empty: none); sizes max_tokens and the history estimate
  int output_tokens = -1;  ///< asked for (from the file, or the reference's length once counted); < 0: the workload's
};

struct Conversation {
  std::string system;
  std::vector<DatasetTurn> turns;
};

struct Dataset {
  std::string path;
  std::vector<Conversation> conversations;
  size_t num_rows = 0;             ///< rows read
  size_t num_unusable = 0;         ///< rows with no user text (left out)
  size_t num_cut = 0;              ///< conversations cut before a turn whose prompt would pass max_prompt_tokens
  size_t num_dropped_long = 0;     ///< conversations whose first prompt already passes it (left out)
  int max_prompt_tokens = 0;       ///< 0: no limit
};

/// Reads a dataset (format by content: a JSON array, or one object per line). The error names the
/// file and the row. At most 1 GiB.
Result<std::shared_ptr<Dataset>> load_dataset(const std::string& path);

/// Counts each turn's reference with `builder` (its output length, where the file gave none) and, with
/// `max_prompt_tokens` > 0, keeps every prompt within it: a conversation is cut before the first turn
/// whose prompt (system, the turns before with their references as the answers, this turn) would pass
/// it, and left out when its first already does - counted, never truncated mid-text. Fails when no
/// conversation is left.
Result<void> fit_dataset(Dataset& dataset, const PromptBuilder& builder, int max_prompt_tokens);

}  // namespace tern::bench
