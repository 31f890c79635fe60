#include "engine/engine_stack.h"

#include <fmt/format.h>

#include <filesystem>

#include "engine/kv/disk_store.h"

namespace tern::engine {

Result<std::unique_ptr<EngineStack>> build_engine_stack(EngineStackOptions options) {
  auto stack = std::make_unique<EngineStack>();
  stack->backend = backend::make_cpu_backend(options.threads);
  auto model = model::Model::load(options.path, *stack->backend);
  if (!model) return std::unexpected(model.error());
  stack->model = std::move(*model);
  if (options.check_model) {
    if (auto ok = options.check_model(*stack->model); !ok) return std::unexpected(ok.error());
  }
  EngineConfig& config = options.engine;
  if (config.speculation.method == SpeculationMethod::kDraft) {
    auto draft = model::Model::load(config.speculation.draft_model, *stack->backend);
    if (!draft) return fail("draft model {}: {}", config.speculation.draft_model, draft.error().message);
    if (auto ok = check_draft_compatible(*stack->model, **draft); !ok) {
      return fail("draft model {} cannot guess for {}: {}", config.speculation.draft_model, options.path, ok.error().message);
    }
    stack->draft_model = std::move(*draft);
  }
  options.kv.block_size = config.block_size;
  auto kv = size_kv_cache(*stack->model, options.kv);
  if (!kv) return fail("KV cache: {}", kv.error().message);
  stack->kv = *kv;
  const auto file_bytes = [](const std::string& path) {
    std::error_code ec;
    const auto bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    return ec ? int64_t{0} : bytes;
  };
  stack->resident_bytes = file_bytes(options.path) + kv->bytes();
  const int64_t draft_kv_bytes =
      stack->draft_model ? stack->draft_model->kv_cache_shape(config.block_size).bytes_per_block() * kv->num_blocks : 0;
  if (stack->draft_model) stack->resident_bytes += file_bytes(config.speculation.draft_model) + draft_kv_bytes;
  if (options.reserve) {
    if (auto ok = options.reserve(stack->resident_bytes); !ok) return std::unexpected(ok.error());
  }
  config.max_model_len = kv->max_model_len;
  config.num_kv_blocks = kv->num_blocks;
  if (options.kv_pin_quota_bytes > 0) config.org_pin_quota_blocks = options.kv_pin_quota_bytes / std::max<int64_t>(1, kv->block_bytes);
  if (!options.kv_disk_cache.empty() && config.prefix_caching) {  // without prefix caching nothing would look blocks up
    // Keyed by the model file and the KV layout: another model, or another layout, never reads these blocks.
    auto fingerprint = DiskKvStore::file_fingerprint(options.path);
    if (!fingerprint) return fail("KV disk cache: {}", fingerprint.error().message);
    const backend::KvCacheShape shape = stack->model->kv_cache_shape(config.block_size);
    const std::string store_id = fmt::format("{}-l{}k{}v{}b{}", *fingerprint, shape.num_layers, shape.key_width, shape.value_width,
                                             shape.block_size);
    auto store = DiskKvStore::open(options.kv_disk_cache, store_id, shape.block_size, shape.bytes_per_block(), options.kv_disk_bytes);
    if (!store) return fail("KV disk cache: {}", store.error().message);
    config.kv_disk_store = std::move(*store);
  }
  if (stack->draft_model) {
    stack->draft_model->set_max_sequence_length(config.max_model_len);
    config.draft_model = std::make_shared<DraftModel>(*stack->draft_model, kv->num_blocks, config.block_size,
                                                      stack->model->config().vocab_size, config.prefix_caching,
                                                      config.speculation.min_draft);
  }
  stack->engine = std::make_unique<Engine>(*stack->model, std::move(config));
  stack->engine->start();
  return stack;
}

}  // namespace tern::engine
