#pragma once
// A request accepted before it can start (its model or its LoRA adapter is still being read): a
// cancel() that comes first is remembered, and the real call, once started, is attached to it.

#include <memory>
#include <mutex>

#include "router/provider.h"

namespace tern::router {

class PendingCall : public Call {
 public:
  void cancel() override {
    std::shared_ptr<Call> call;
    {
      std::lock_guard lock(mutex_);
      cancelled_ = true;
      call = inner_;
    }
    if (call) call->cancel();
  }

  /// Runs `start` (which starts the request and returns its call, or null when it failed and said so
  /// itself) unless the request was cancelled meanwhile; a cancel() waits until it has run.
  template <class Start>
  void start(Start&& start) {
    std::lock_guard lock(mutex_);
    if (!cancelled_) inner_ = start();
  }

 private:
  std::mutex mutex_;
  bool cancelled_ = false;
  std::shared_ptr<Call> inner_;
};

}  // namespace tern::router
