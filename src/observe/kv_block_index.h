#pragma once
// The other end of kv_events.h: what each replica's KV cache holds, learnt from the events the
// replicas publish, for a gateway that routes a prompt to the replica holding most of its prefix.
//
//   tern.yaml  kv_events: {listen: tcp://127.0.0.1:5557}
//   replicas   tern serve ... --kv-events-endpoint tcp://GATEWAY:5557 --kv-events-pod replica-1
//
// The index binds a ZeroMQ SUB socket (the replicas' XPUB sockets connect to it, as they would to
// llm-d's indexer), subscribes to "kv@", and keeps per source ("POD@MODEL", from the topic) the set of
// block hashes stored and not yet removed. A request's prompt tokens, hashed as the replicas hash
// them (kv_event_block_chain), match a source for as many leading blocks as it holds.
//
// One thread of its own receives and applies events; lookups take a shared lock. A sequence gap (events
// ZeroMQ dropped) is counted: the source's set may then hold a block already evicted, or lack one —
// a routing hint gone stale, never a wrong answer. Hostile or malformed messages are counted and
// dropped; a source holds at most kMaxBlocksPerSource hashes, and at most kMaxSources sources are kept.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "util/result.h"

namespace tern::observe {

/// The block hashes of `tokens`' full blocks, chained from `root` (kv_event_root_hash of the seed) as
/// the replicas compute them: hash[i] = kv_event_block_hash(hash[i-1], block i).
std::vector<uint64_t> kv_event_block_chain(std::span<const int32_t> tokens, int64_t block_size, uint64_t root);

struct KvBlockIndexStats {
  int64_t messages = 0, stored = 0, removed = 0, cleared = 0;
  int64_t sequence_gaps = 0;   ///< messages a source sent that never arrived
  int64_t bad_messages = 0;    ///< not a [topic, sequence, msgpack batch] this index understands
  int64_t sources = 0, blocks = 0;
};

/// The index's counters in Prometheus text: tern:kv_index_{messages,events,sequence_gaps,bad_messages}_total,
/// tern:kv_index_{sources,blocks}.
std::string kv_index_metrics_text(const KvBlockIndexStats& stats);

class KvBlockIndex {
 public:
  static constexpr size_t kMaxBlocksPerSource = size_t{1} << 22;
  static constexpr size_t kMaxSources = 4096;  ///< replica/model pairs; a new one past this is refused

  /// Binds `endpoint` (e.g. tcp://127.0.0.1:5557) and starts receiving.
  static Result<std::unique_ptr<KvBlockIndex>> listen(const std::string& endpoint);
  /// Without a socket: events only through apply() (tests).
  KvBlockIndex();
  ~KvBlockIndex();
  KvBlockIndex(const KvBlockIndex&) = delete;
  KvBlockIndex& operator=(const KvBlockIndex&) = delete;

  /// The endpoint bound (a tcp://HOST:* port resolved), empty without a socket.
  const std::string& endpoint() const { return endpoint_; }
  /// Leading blocks of `chain` that `source` ("POD@MODEL") holds: the prefix a request would find cached.
  int64_t matched_blocks(const std::string& source, std::span<const uint64_t> chain) const;
  /// The block size `source`'s events declare; 0 before its first BlockStored.
  int64_t block_size(const std::string& source) const;
  KvBlockIndexStats stats() const;

  /// Applies one message as received: topic "kv@POD@MODEL", an 8-byte big-endian sequence number, a
  /// msgpack event batch. An error says why it was dropped (also counted in bad_messages).
  Result<void> apply(std::string_view topic, std::string_view sequence, std::string_view payload);

 private:
  struct Source {
    std::unordered_set<uint64_t> blocks;
    int64_t block_size = 0;
    bool has_sequence = false;
    uint64_t next_sequence = 0;
  };
  void run();

  mutable std::shared_mutex mutex_;
  std::map<std::string, Source, std::less<>> sources_;
  KvBlockIndexStats stats_;
  std::string endpoint_;
  void* context_ = nullptr;
  void* socket_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace tern::observe
