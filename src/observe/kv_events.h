#pragma once
// KV-cache events for precise prefix-aware routing, in the shape llm-d's KV-cache indexer reads (the
// shape vLLM publishes): `tern serve --kv-events-endpoint tcp://indexer:5557` connects a ZeroMQ PUB
// socket to the indexer and sends, for each local model, multipart messages
//
//   [topic "kv@<pod>@<model>", sequence number (8 bytes, big-endian), payload (msgpack)]
//
// where the payload is an event batch `[timestamp (float), [event, ...]]` and each event an array:
//   ["BlockStored", [block hashes], parent block hash or nil, [token ids], block size, nil (LoRA id)]
//   ["BlockRemoved", [block hashes]]
//   ["AllBlocksCleared"]                    (once at start: whatever the indexer held for this pod is gone)
//
// Block hashes are the ones llm-d's indexer recomputes from a prompt's tokens to score pods: for each
// full block of `block_size` tokens, hash = the last 8 bytes (big-endian) of SHA-256 of the canonical
// CBOR of [parent hash, [token ids], null]; the first block's parent is the last 8 bytes of SHA-256 of
// the CBOR of the hash seed string (vLLM's PYTHONHASHSEED, default ""). So a router that tokenizes a
// prompt finds exactly the pods that hold its prefix. tern's own cache keys (which also cover the
// LoRA adapter and the org's cache salt) map onto these: copies of one prefix under several keys are
// counted, and a hash is stored when its first copy is cached and removed when its last is evicted.
//
// The engine thread only computes hashes and queues events; a thread of the publisher's own sends them
// in batches (every 10 ms), once the indexer has subscribed (an XPUB socket hears the subscription, so
// the events of a server that starts before its indexer are held, up to a bound, rather than lost). A
// stalled indexer costs dropped events (ZeroMQ's high-water mark), never the engine's time.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/kv/kv_manager.h"
#include "util/result.h"

namespace tern::observe {

/// llm-d's (and vLLM's) block hash: see above.
uint64_t kv_event_block_hash(uint64_t parent, std::span<const int32_t> tokens);
/// The first block's parent for a hash seed.
uint64_t kv_event_root_hash(std::string_view seed);

struct KvEventsOptions {
  std::string endpoint;       ///< ZeroMQ endpoint the indexer binds, e.g. tcp://127.0.0.1:5557
  std::string pod;            ///< this server's identity in the topic (default: the host name)
  std::string model;          ///< the model's served name, in the topic
  int64_t block_size = 16;
  std::string hash_seed;      ///< vLLM's PYTHONHASHSEED as the indexer is configured (default "")
};

struct KvEventsStats {
  int64_t batches = 0, stored = 0, removed = 0, dropped = 0;
};

class KvEventPublisher final : public engine::KvCacheObserver {
 public:
  /// Connects (ZeroMQ connects in the background: an indexer that starts later still gets what is sent
  /// once it is up) and queues AllBlocksCleared.
  static Result<std::shared_ptr<KvEventPublisher>> start(KvEventsOptions options);
  ~KvEventPublisher() override;  ///< sends what is queued, then stops

  void on_stored(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) override;
  void on_removed(uint64_t hash) override;
  KvEventsStats stats() const;

 private:
  struct Event {
    int kind = 0;  // 0 stored, 1 removed, 2 cleared
    uint64_t hash = 0;
    bool has_parent = false;
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
  };
  explicit KvEventPublisher(KvEventsOptions options);
  void run();
  std::string encode(const std::vector<Event>& batch) const;

  KvEventsOptions options_;
  const uint64_t root_;
  // Engine thread: tern's cache key -> its event hash; copies of each event hash now cached.
  std::unordered_map<uint64_t, uint64_t> event_hash_of_;
  std::unordered_map<uint64_t, int64_t> copies_;

  mutable std::mutex mutex_;
  std::vector<Event> queue_;
  bool stopping_ = false;
  KvEventsStats stats_;
  void* context_ = nullptr;  // zmq
  void* socket_ = nullptr;
  uint64_t sequence_ = 0;
  std::thread thread_;
};

}  // namespace tern::observe
