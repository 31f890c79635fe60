#include "engine/lora/adapter_registry.h"

#include <fmt/format.h>

namespace tern::engine {

Result<void> check_adapter_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return fail("adapter name '{}' must be 1 to 64 characters", name);
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return fail("adapter name '{}' may use only letters, digits, '.', '_' and '-'", name);
    }
  }
  return {};
}

Result<void> AdapterRegistry::add(AdapterSpec spec) {
  if (auto ok = check_adapter_name(spec.name); !ok) return ok;
  if (spec.path.empty()) return fail("adapter '{}' has no path", spec.name);
  if (!(spec.scale > 0 || spec.scale < 0)) return fail("adapter '{}': scale must be a non-zero number", spec.name);
  std::lock_guard lock(mutex_);
  if (entries_.contains(spec.name)) return fail("an adapter named '{}' is already loaded", spec.name);
  auto entry = std::make_shared<Entry>();
  entry->spec = std::move(spec);
  entries_.emplace(entry->spec.name, std::move(entry));
  return {};
}

Result<std::shared_ptr<const model::LoraAdapter>> AdapterRegistry::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return fail("no adapter named '{}' is loaded", name);
  auto loaded = std::move(it->second->loaded);
  entries_.erase(it);
  return loaded;
}

bool AdapterRegistry::contains(const std::string& name) const {
  std::lock_guard lock(mutex_);
  return entries_.contains(name);
}

bool AdapterRegistry::is_loaded(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  return it != entries_.end() && it->second->loaded != nullptr;
}

Result<std::shared_ptr<const model::LoraAdapter>> AdapterRegistry::acquire(const std::string& name, const model::ModelConfig& config) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return fail("no adapter named '{}' is loaded", name);
    entry = it->second;
    entry->last_used = std::chrono::steady_clock::now();
    if (entry->loaded) return entry->loaded;
  }
  std::lock_guard load_lock(entry->load_mutex);
  {
    std::lock_guard lock(mutex_);
    if (entry->loaded) return entry->loaded;  // another request loaded it meanwhile
  }
  const auto start = std::chrono::steady_clock::now();
  auto adapter = model::load_lora(entry->spec.path, config, {.scale = entry->spec.scale, .max_rank = max_rank_, .weight_type = weight_type_});
  if (!adapter) return fail("adapter '{}': {}", name, adapter.error().message);
  std::lock_guard lock(mutex_);
  entry->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  entry->loaded = *adapter;
  evict_locked(entry.get());
  return *adapter;
}

void AdapterRegistry::evict_locked(const Entry* keep) {
  while (true) {
    int64_t num_loaded = 0;
    Entry* oldest = nullptr;
    for (auto& [name, e] : entries_) {
      if (!e->loaded) continue;
      ++num_loaded;
      // use_count 1: only this registry holds it, no request does.
      if (e.get() != keep && e->loaded.use_count() == 1 && (oldest == nullptr || e->last_used < oldest->last_used)) oldest = e.get();
    }
    if (num_loaded <= max_loaded_ || oldest == nullptr) return;
    oldest->loaded.reset();
  }
}

std::vector<AdapterStatus> AdapterRegistry::list() const {
  std::lock_guard lock(mutex_);
  std::vector<AdapterStatus> out;
  for (const auto& [name, e] : entries_) {
    AdapterStatus s{.spec = e->spec, .loaded = e->loaded != nullptr, .in_use = 0, .bytes = 0, .rank = 0, .load_seconds = e->load_seconds};
    if (e->loaded) {
      s.in_use = e->loaded.use_count() - 1;
      s.bytes = e->loaded->bytes;
      s.rank = e->loaded->max_rank;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tern::engine
