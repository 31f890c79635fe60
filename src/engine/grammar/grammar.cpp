#include "engine/grammar/grammar.h"

#include <dlpack/dlpack.h>
#include <xgrammar/xgrammar.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <exception>

#include <fmt/format.h>
#include <limits>
#include <optional>
#include <string_view>

namespace tern::engine {
namespace {

/// xgrammar's matcher for one request, and its bitmask buffer (one bit per vocabulary entry).
class XgrammarConstraint final : public TokenConstraint {
 public:
  XgrammarConstraint(const xgrammar::CompiledGrammar& grammar, int vocab_size)
      : matcher_(grammar), bits_((static_cast<size_t>(vocab_size) + 31) / 32), shape_{static_cast<int64_t>(bits_.size())} {}

  void fill_mask() override {
    DLTensor tensor{bits_.data(), DLDevice{kDLCPU, 0}, 1, DLDataType{kDLInt, 32, 1}, shape_, nullptr, 0};
    matcher_.FillNextTokenBitmask(&tensor);
  }

  bool apply_mask(std::span<float> logits) override {
    bool any = false;
    constexpr float kMasked = -std::numeric_limits<float>::infinity();
    const size_t known = std::min(logits.size(), bits_.size() * 32);
    // Word by word: most words of a mask are all allowed or all refused; the rest, bit by bit over
    // the refused ones only.
    for (size_t word = 0; word * 32 < known; ++word) {
      const auto allowed = static_cast<uint32_t>(bits_[word]);
      const size_t first = word * 32;
      const size_t count = std::min<size_t>(32, known - first);
      if (allowed != 0) any = true;
      if (allowed == 0xFFFFFFFFu) continue;
      if (allowed == 0) {
        std::fill_n(logits.begin() + static_cast<std::ptrdiff_t>(first), count, kMasked);
        continue;
      }
      for (uint32_t refused = ~allowed; refused != 0; refused &= refused - 1) {
        const auto bit = static_cast<size_t>(std::countr_zero(refused));
        if (bit < count) logits[first + bit] = kMasked;
      }
    }
    // Logits past the vocabulary the grammar knows (padding rows of the output matrix) never come.
    for (size_t i = known; i < logits.size(); ++i) logits[i] = kMasked;
    return any;
  }

  bool accept(int32_t token) override { return matcher_.AcceptToken(token); }

  bool allows_any() override {
    fill_mask();
    return std::any_of(bits_.begin(), bits_.end(), [](int32_t word) { return word != 0; });
  }

 private:
  xgrammar::GrammarMatcher matcher_;
  std::vector<int32_t> bits_;
  int64_t shape_[1];
};

}  // namespace

namespace {

Result<void> check_node(const nlohmann::ordered_json& node, const std::string& path) {
  if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) {
      if (auto ok = check_node(node[i], fmt::format("{}[{}]", path, i)); !ok) return ok;
    }
    return {};
  }
  if (!node.is_object()) return {};
  const auto required = node.find("required");
  const auto extra = node.find("additionalProperties");
  if (required != node.end() && required->is_array() && extra != node.end() && *extra == false && !node.contains("patternProperties")) {
    const auto properties = node.find("properties");
    for (const auto& name : *required) {
      if (name.is_string() && (properties == node.end() || !properties->is_object() || !properties->contains(name.get<std::string>()))) {
        return fail("{}: requires \"{}\" but does not allow it (not in properties, additionalProperties false): no value satisfies it",
                    path.empty() ? "the schema" : path, name.get<std::string>());
      }
    }
  }
  for (const auto& [key, value] : node.items()) {
    if (key == "enum" || key == "const" || key == "examples" || key == "default") continue;  // values, not schemas
    if (auto ok = check_node(value, path.empty() ? key : path + "." + key); !ok) return ok;
  }
  return {};
}

}  // namespace

Result<void> check_schema_keepable(const nlohmann::ordered_json& schema) { return check_node(schema, ""); }

MaskWorker::MaskWorker() : thread_([this] { run(); }) {}

MaskWorker::~MaskWorker() {
  {
    std::lock_guard lock(mutex_);
    is_stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void MaskWorker::start(std::span<TokenConstraint* const> constraints) {
  {
    std::lock_guard lock(mutex_);
    work_.assign(constraints.begin(), constraints.end());
    is_busy_ = true;
  }
  wake_.notify_all();
}

double MaskWorker::wait() {
  std::unique_lock lock(mutex_);
  wake_.wait(lock, [this] { return !is_busy_; });
  return fill_seconds_;
}

void MaskWorker::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return is_busy_ || is_stopping_; });
    if (is_stopping_) return;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    for (TokenConstraint* constraint : work_) constraint->fill_mask();  // work_ is not touched until wait() returns
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    fill_seconds_ = seconds;
    is_busy_ = false;
    wake_.notify_all();
  }
}

struct GrammarCompiler::Impl {
  xgrammar::TokenizerInfo info;
  xgrammar::GrammarCompiler compiler;
  int vocab_size;

  Impl(std::vector<std::string> vocab, std::vector<int32_t> end_tokens)
      : info(vocab, xgrammar::VocabType::RAW, static_cast<int>(vocab.size()), std::move(end_tokens)),
        compiler(info, /*max_threads=*/1, /*cache_enabled=*/true),
        vocab_size(static_cast<int>(vocab.size())) {}
};

GrammarCompiler::GrammarCompiler(const tok::Tokenizer& tokenizer, std::span<const int32_t> end_tokens) {
  // Each token as the bytes it adds to the text (RAW: xgrammar decodes nothing). Control tokens give
  // "" and so are never allowed inside the grammar; the end tokens are allowed where it is complete.
  std::vector<std::string> vocab(tokenizer.vocab().size());
  for (size_t i = 0; i < vocab.size(); ++i) vocab[i] = tokenizer.token_bytes(static_cast<tok::TokenId>(i));
  impl_ = std::make_unique<Impl>(std::move(vocab), std::vector<int32_t>(end_tokens.begin(), end_tokens.end()));
}

GrammarCompiler::~GrammarCompiler() = default;

Result<std::shared_ptr<TokenConstraint>> GrammarCompiler::compile(const std::function<xgrammar::CompiledGrammar(xgrammar::GrammarCompiler&)>& how) {
  std::optional<xgrammar::CompiledGrammar> grammar;
  try {
    std::lock_guard lock(mutex_);
    grammar.emplace(how(impl_->compiler));
  } catch (const std::exception& e) {
    // xgrammar's messages start with "[time] file:line: "; the rest is what the schema asks.
    std::string_view message = e.what();
    if (message.starts_with('[')) {
      if (const size_t at = message.find(".cc:"); at != std::string_view::npos) {
        if (const size_t colon = message.find(": ", at); colon != std::string_view::npos) message.remove_prefix(colon + 2);
      }
    }
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.remove_suffix(1);
    return fail("{}", message);
  }
  return std::shared_ptr<TokenConstraint>(std::make_shared<XgrammarConstraint>(*grammar, impl_->vocab_size));
}

Result<std::shared_ptr<TokenConstraint>> GrammarCompiler::json_schema(const std::string& schema) {
  // Compact JSON (no free whitespace between tokens): shorter outputs, and no run of spaces a small
  // model could loop in. strict_mode: properties not named are not allowed unless the schema says so.
  return compile([&](xgrammar::GrammarCompiler& compiler) { return compiler.CompileJSONSchema(schema, /*any_whitespace=*/false); });
}

Result<std::shared_ptr<TokenConstraint>> GrammarCompiler::structural_tag(const std::string& spec) {
  return compile([&](xgrammar::GrammarCompiler& compiler) { return compiler.CompileStructuralTag(spec); });
}

}  // namespace tern::engine
