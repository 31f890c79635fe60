#include "engine/spec/draft_model.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string_view>

namespace tern::engine {
namespace {

/// A request this many tokens or fewer behind is in its steady state (the last step's accepted guesses
/// and the target's token); further behind, it is catching up on a prompt, within kMaxCatchUpTokens.
constexpr int64_t kSteadyRows = 16;

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

}  // namespace

class DraftModel::Proposer final : public DraftProposer {
 public:
  explicit Proposer(DraftModel& owner) : owner_(owner) {}
  ~Proposer() override { owner_.release(sequence_); }

  void propose(const DraftQuery& query, std::vector<int32_t>& draft) override {
    draft.clear();
    if (query.max_tokens > 0 && !query.tokens.empty()) owner_.pending_.push_back({.sequence = &sequence_, .query = query, .draft = &draft});
  }

  void prefill(std::span<const int32_t> tokens, int64_t end) override {
    if (owner_.pays_ && end > 0) owner_.prefills_.push_back({.sequence = &sequence_, .query = {.tokens = tokens.first(static_cast<size_t>(end))}});
  }

 private:
  DraftModel& owner_;
  Sequence sequence_;
};

DraftModel::DraftModel(model::Model& model, int64_t num_blocks, int64_t block_size, int64_t target_vocab_size, bool prefix_caching,
                       int64_t min_draft)
    : model_(model),
      cache_(model.make_kv_cache(num_blocks, block_size)),
      kv_(num_blocks, block_size, prefix_caching),
      target_vocab_size_(std::min<int64_t>(target_vocab_size, model.config().vocab_size)),
      min_draft_(min_draft) {
  const std::string_view parts[] = {"draft"};
  cache_key_ = KvManager::extra_key(parts);
}

DraftModel::~DraftModel() = default;

std::unique_ptr<DraftProposer> DraftModel::make_proposer() { return std::make_unique<Proposer>(*this); }

void DraftModel::release(Sequence& sequence) {
  std::erase_if(pending_, [&](const Pending& p) { return p.sequence == &sequence; });
  std::erase_if(prefills_, [&](const Pending& p) { return p.sequence == &sequence; });
  kv_.free(sequence.blocks);
}

bool DraftModel::catch_up_plan(Pending& p, int64_t& budget) {
  const auto n = static_cast<int64_t>(p.query.tokens.size());
  const int64_t need = n - p.sequence->num_verified;
  p.rows = need <= kSteadyRows ? need : std::min(need, budget);
  if (need > kSteadyRows) budget -= p.rows;
  return p.rows == need;
}

void DraftModel::choose(std::vector<Pending*>& candidates, const DraftEconomics& economics) const {
  if (economics.token_seconds <= 0 || cost_.num_observed() < kExploreRounds) return;  // all of them
  // Explorers first (they go whatever it costs), then the most likely guesses: a round's fixed cost is
  // shared by all its rows, so the best prefix may pay where its first row alone does not.
  std::stable_sort(candidates.begin(), candidates.end(), [](const Pending* a, const Pending* b) {
    return a->explores != b->explores ? a->explores : a->gain > b->gain;
  });
  // A round computes nothing else, so its fixed cost (the whole model read, at one stream) is theirs too.
  StepShape shape;
  double worth = 0, best_net = 0;
  size_t best = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Pending& p = *candidates[i];
    shape.add_chunk(p.position, std::min(p.rows, kSteadyRows), 1);
    worth += p.gain * economics.token_seconds;
    const double net = worth - kCostMargin * (cost_.predict(shape) + static_cast<double>(i + 1) * economics.verify_seconds);
    if (p.explores || net > best_net) {
      best_net = std::max(net, best_net);
      best = i + 1;
    }
  }
  candidates.resize(best);
}

void DraftModel::forward(const std::vector<Pending*>& round, const std::vector<Pending*>& catch_up, bool is_first_round) {
  batch_.clear();
  batch_.block_tables.clear();
  StepShape shape;
  int32_t slot = 0;
  const auto add = [&](Pending& p, bool guessing) {
    const std::span<const int32_t> tokens = p.query.tokens;
    batch_.block_tables.emplace_back(p.sequence->blocks.table);
    for (int64_t i = 0; i < p.rows; ++i) {
      const int64_t position = p.position + i;
      const int32_t token = is_first_round ? tokens[static_cast<size_t>(position)] : p.draft->back();
      batch_.add(token, static_cast<int32_t>(position), slot, guessing && i + 1 == p.rows);
    }
    shape.add_chunk(p.position, p.rows, guessing ? 1 : 0);
    ++slot;
  };
  for (Pending* p : round) add(*p, true);
  for (Pending* p : catch_up) add(*p, false);
  const auto start = std::chrono::steady_clock::now();
  const auto ok = model_.forward(batch_, *cache_, logits_);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!ok) {  // the cache is unchanged: no guesses this step, and the sequences stay where they were
    for (Pending* p : round) {
      p->draft->clear();
      p->guessing = false;
    }
    return;
  }
  cost_.observe(shape, seconds);
  stats_.rounds += 1;
  stats_.seconds += seconds;
  const int64_t vocab = model_.config().vocab_size;
  const auto& ends = model_.end_of_generation_tokens();
  for (size_t r = 0; r < round.size(); ++r) {
    Pending& p = *round[r];
    Sequence& s = *p.sequence;
    // What the rows computed: the request's own tokens (first round) or the previous guess.
    if (is_first_round) {
      s.num_verified += p.rows;
      stats_.catch_up_tokens += p.rows;
    } else {
      s.unverified.push_back(p.draft->back());
    }
    p.position += p.rows;
    p.guessing = false;
    p.explores = static_cast<int64_t>(p.draft->size()) + 1 < min_draft_;  // an explorer's first guess only
    const int32_t guess = argmax(logits_.data() + r * static_cast<size_t>(vocab), vocab);
    if (guess >= target_vocab_size_) continue;  // the target has no such token
    p.draft->push_back(guess);
    stats_.guesses += 1;
    p.gain *= p.query.acceptance;
    const bool is_end = std::find(ends.begin(), ends.end(), guess) != ends.end();
    p.guessing = !is_end && static_cast<int64_t>(p.draft->size()) < p.query.max_tokens;
  }
  for (Pending* p : catch_up) {
    p->sequence->num_verified += p->rows;
    p->position += p->rows;
    stats_.catch_up_tokens += p->rows;
  }
}

void DraftModel::sync(Pending& p) {
  // The sequence follows its request: the guesses the target accepted are now verified K/V.
  Sequence& s = *p.sequence;
  const std::span<const int32_t> tokens = p.query.tokens;
  const auto n = static_cast<int64_t>(tokens.size());
  if (s.is_new) {
    s.num_verified = kv_.acquire_cached_prefix(s.blocks, tokens, cache_key_);
    s.is_new = false;
  }
  size_t m = 0;
  while (m < s.unverified.size() && s.num_verified + static_cast<int64_t>(m) < n &&
         tokens[static_cast<size_t>(s.num_verified) + m] == s.unverified[m]) {
    ++m;
  }
  s.num_verified += static_cast<int64_t>(m);
  s.unverified.clear();
  // The last token's logits give the first guess: it is computed again if it was already (the
  // request was not scheduled since; the same K/V is written again).
  s.num_verified = std::min(s.num_verified, n - 1);
  kv_.cache_full_blocks(s.blocks, tokens, s.num_verified, cache_key_);
  p.position = s.num_verified;
  p.gain = p.query.acceptance;
  p.guessing = false;
  p.explores = p.query.explore || min_draft_ > 0;
}

void DraftModel::run_prefill() {
  if (prefills_.empty()) return;
  std::vector<Pending*> chunks;
  for (Pending& p : prefills_) {
    sync(p);
    p.rows = static_cast<int64_t>(p.query.tokens.size()) - p.position;
    if (p.rows > 0 && kv_.allocate_slots(p.sequence->blocks, p.position + p.rows)) chunks.push_back(&p);
  }
  if (!chunks.empty()) forward({}, chunks, /*is_first_round=*/true);
  prefills_.clear();
}

void DraftModel::run(const DraftEconomics& economics) {
  if (pending_.empty()) return;
  for (Pending& p : pending_) sync(p);
  // Round 1: catch up and guess once; then a row per request still guessing, while guesses pay.
  std::vector<Pending*> round, catch_up;
  for (Pending& p : pending_) round.push_back(&p);
  int64_t budget = kMaxCatchUpTokens;
  for (Pending* p : round) {
    const int64_t need = static_cast<int64_t>(p->query.tokens.size()) - p->position;
    p->rows = std::min(need, kSteadyRows);
    // Exploring tests a caught-up request's guesses; it never pays for catching a prompt up.
    if (need > kSteadyRows && min_draft_ == 0) p->explores = false;
  }
  choose(round, economics);
  pays_ = min_draft_ > 0 || cost_.num_observed() < kExploreRounds ||
          std::any_of(round.begin(), round.end(), [](const Pending* p) { return !p->explores; });
  std::vector<Pending*> guessing;
  for (Pending* p : round) {
    const bool caught_up = catch_up_plan(*p, budget);
    if (p->rows == 0 || !kv_.allocate_slots(p->sequence->blocks, p->position + p->rows)) continue;
    (caught_up ? guessing : catch_up).push_back(p);
  }
  bool is_first_round = true;
  while (!guessing.empty() || !catch_up.empty()) {
    forward(guessing, catch_up, is_first_round);
    is_first_round = false;
    catch_up.clear();
    round.clear();
    for (Pending* p : guessing) {
      if (p->guessing) round.push_back(p);
    }
    for (Pending* p : round) p->rows = 1;
    choose(round, economics);
    guessing.clear();
    for (Pending* p : round) {
      if (kv_.allocate_slots(p->sequence->blocks, p->position + 1)) guessing.push_back(p);
    }
  }
  pending_.clear();
}

Result<void> check_draft_compatible(const model::Model& target, const model::Model& draft) {
  const tok::Vocab& t = target.tokenizer().vocab();
  const tok::Vocab& d = draft.tokenizer().vocab();
  if (t.kind != d.kind || t.model != d.model) {
    return fail("the draft model's tokenizer ({}) is not the target's ({})", d.model, t.model);
  }
  if (std::abs(static_cast<int64_t>(t.size()) - static_cast<int64_t>(d.size())) > 128) {
    return fail("the vocabularies differ: the target has {} tokens, the draft model {}", t.size(), d.size());
  }
  if (t.bos != d.bos || t.eos != d.eos) return fail("the draft model's BOS / EOS tokens are not the target's");
  const size_t common = std::min(t.size(), d.size());
  for (size_t i = 0; i < common; ++i) {
    if (t.tokens[i] != d.tokens[i]) return fail("token {} is '{}' in the target and '{}' in the draft model", i, t.tokens[i], d.tokens[i]);
  }
  return {};
}

}  // namespace tern::engine
