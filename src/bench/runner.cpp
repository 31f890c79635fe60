#include "bench/runner.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tern::bench {

namespace asio = boost::asio;

namespace {

/// A conversation in progress on one target: its history grows by each answer.
struct ActiveSession {
  size_t target = 0;
  const PlannedSession* planned = nullptr;
  size_t next_turn = 0;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  int64_t history_tokens = 0;         // client count of the planned text already in the history
  std::unique_ptr<asio::steady_timer> think_timer;
};

/// How many sessions of a stage to have ready ahead of the run: about a second of its arrivals (open
/// loop), or two rounds of its workers (closed loop). Enough that the event loop rarely builds a prompt
/// itself; little enough that building them ahead takes little CPU from a machine that measures.
size_t lookahead_window(const StageSpec& spec, size_t num_targets) {
  const ArrivalSpec& a = spec.arrival;
  const double per_second = a.kind == ArrivalSpec::Kind::kRamp     ? std::max(a.from_rate, a.to_rate)
                            : a.kind == ArrivalSpec::Kind::kReplay ? 64 * a.speedup  // a log's rate varies: a generous guess
                                                                   : a.rate;
  const double sessions = a.is_open_loop() ? per_second : 2.0 * a.concurrency * static_cast<double>(num_targets);
  return static_cast<size_t>(std::clamp(sessions, 16.0, 8192.0));
}

/// Generates the plan's sessions on a thread of its own, a window (lookahead_window) ahead of where the
/// run is, so that building prompts (tokenizing them) stays off the event loop that timestamps
/// responses. The run asks the plan directly; a session the look-ahead has not reached yet is
/// generated then.
class Lookahead {
 public:
  Lookahead(Plan& plan, size_t num_targets) : plan_(plan), num_targets_(num_targets), thread_([this] { run(); }) {}
  ~Lookahead() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  Lookahead(const Lookahead&) = delete;
  Lookahead& operator=(const Lookahead&) = delete;

  /// The run has reached session `index` of `stage`.
  void reached(size_t stage, size_t index) {
    {
      std::lock_guard lock(mutex_);
      if (stage < stage_ || (stage == stage_ && index <= reached_)) return;
      stage_ = stage;
      reached_ = index;
    }
    wake_.notify_all();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    size_t stage = 0;
    while (!stopping_ && stage < plan_.stages.size()) {
      stage = std::max(stage, stage_);  // a stage the run has left needs no more sessions
      if (stage >= plan_.stages.size()) break;
      StagePlan& plan = *plan_.stages[stage];
      const size_t want = (stage == stage_ ? reached_ : 0) + lookahead_window(plan.spec(), num_targets_);
      if (plan.is_exhausted()) {
        ++stage;
        continue;
      }
      if (plan.num_generated() >= want) {
        wake_.wait(lock);
        continue;
      }
      lock.unlock();
      plan.session(plan.num_generated());
      lock.lock();
    }
  }

  Plan& plan_;
  const size_t num_targets_;
  std::mutex mutex_;
  std::condition_variable wake_;
  size_t stage_ = 0, reached_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace

void finalize_record(RequestRecord& record, ApiKind api, std::string_view cache_retention) {
  if (record.is_finalized) return;
  record.is_finalized = true;
  for (size_t i = 0; i < record.raw_events.size(); ++i) {
    auto chunk = parse_stream_chunk(record.raw_events[i], api);
    if (!chunk) {
      if (record.error == ErrorKind::kNone) {
        record.error = ErrorKind::kBadChunk;
        record.error_detail = chunk.error().message;
      }
      continue;
    }
    if (chunk->is_end) {
      record.saw_done = true;
      continue;
    }
    if (chunk->error && record.error == ErrorKind::kNone) {
      record.error = ErrorKind::kServerError;
      record.error_detail = chunk->error->message;
    }
    // Reasoning models stream their thinking first; it is generated output, so it counts.
    const std::string text = chunk->reasoning + chunk->text;
    if (!text.empty()) {
      const int64_t at_ns = record.raw_event_ns[i];
      if (record.first_token_ns < 0) record.first_token_ns = at_ns;
      record.chunk_ns.push_back(at_ns);
      record.chunk_text_bytes.push_back(static_cast<uint32_t>(text.size()));
      record.output_text += text;
    }
    if (chunk->usage) record.usage.merge(*chunk->usage);
  }
  // OpenAI's usage has no split of writes by retention: all of them were kept as long as asked.
  if (record.usage.cache_write_1h_tokens < 0 && record.usage.cache_write_tokens >= 0) {
    record.usage.cache_write_1h_tokens = is_long_retention(cache_retention) ? record.usage.cache_write_tokens : 0;
  }
  if (record.is_ok() && !record.saw_done) {
    record.error = ErrorKind::kIncompleteStream;
    record.error_detail = api == ApiKind::kMessages ? "stream ended without a message_stop event" : "stream ended without data: [DONE]";
  }
  record.raw_events = {};
  record.raw_event_ns = {};
}

namespace {

class Runner {
 public:
  Runner(Plan& plan, const std::vector<TargetSpec>& targets, const RunOptions& options)
      : plan_(plan), targets_(targets), options_(options), dispatch_timer_(io_), progress_timer_(io_) {}

  Result<RunResult> run() {
    for (const TargetSpec& target : targets_) {
      auto endpoint = http::parse_url(target.url);
      if (!endpoint) return with_context(fmt::format("target '{}'", target.name), endpoint.error());
      auto client = HttpStreamClient::create(io_.get_executor(), *endpoint, target.max_connections, target.headers, target.ca_file);
      if (!client) return with_context(fmt::format("target '{}'", target.name), client.error());
      clients_.push_back(std::move(*client));
    }
    size_t total = 0;
    for (const auto& stage : plan_.stages) total += stage->max_requests() * targets_.size();
    result_.records.reserve(std::min<size_t>(total, size_t{1} << 16));  // an open-ended stage grows it
    Lookahead lookahead(plan_, targets_.size());
    lookahead_ = &lookahead;
    epoch_ = Clock::now();
    result_.epoch_steady_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(epoch_.time_since_epoch()).count();
    asio::post(io_, [this] { start_stage(0); });
    arm_progress();
    if (options_.stop_on_signals) {
      signals_.emplace(io_, SIGINT, SIGTERM);
      wait_for_signal();
    }
    io_.run();
    lookahead_ = nullptr;
    for (auto& client : clients_) client->close_idle();
    for (RequestRecord& record : result_.records) finalize_record(record, targets_[record.target].api, options_.body.cache_retention);
    return std::move(result_);
  }

 private:
  int64_t since_epoch_ns(Clock::time_point at) const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(at - epoch_).count();
  }

  void start_stage(size_t stage_index) {
    if (stage_index >= plan_.stages.size() || is_stopping_) {
      is_done_ = true;
      progress_timer_.cancel();
      if (signals_) signals_->cancel();
      report_progress();
      return;
    }
    stage_index_ = stage_index;
    StagePlan& stage = *plan_.stages[stage_index];
    // The stage's first sessions (up to 256: start-up stays well under a second even with a model's
    // tokenizer) are built before its clock starts (nothing is in flight between stages), so its first
    // requests never wait for their prompts.
    const size_t ready = std::min<size_t>(lookahead_window(stage.spec(), targets_.size()), 256);
    if (ready > 0) stage.session(ready - 1);
    stage_start_ = Clock::now();
    result_.stages.push_back({since_epoch_ns(stage_start_), 0});
    stage_finished_ = stage_failed_ = stage_chunks_ = 0;
    num_active_sessions_ = 0;
    next_arrival_ = 0;
    next_session_for_target_.assign(targets_.size(), 0);
    num_workers_ = 0;
    if (stage.spec().arrival.is_open_loop()) {
      dispatch_arrivals();
    } else {
      // Interleave the targets' workers so that neither gets a head start.
      for (int worker = 0; worker < stage.spec().arrival.concurrency; ++worker) {
        for (size_t target = 0; target < targets_.size(); ++target) {
          ++num_workers_;
          next_closed_loop_session(target, stage_start_);
        }
      }
    }
    maybe_finish_stage();
  }

  // Open loop: one timer walks the arrival schedule; every arrival due by now goes out, to each target.
  void dispatch_arrivals() {
    StagePlan& stage = *plan_.stages[stage_index_];
    const Clock::time_point now = Clock::now();
    while (const PlannedSession* next = stage.session(next_arrival_)) {
      const PlannedSession& session = *next;
      lookahead_->reached(stage_index_, next_arrival_);
      const auto scheduled =
          stage_start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(session.arrival_s));
      if (is_stopping_) break;
      if (scheduled > now) {
        dispatch_timer_.expires_at(scheduled);
        dispatch_timer_.async_wait([this](boost::system::error_code error) {
          if (!error) dispatch_arrivals();
        });
        return;
      }
      for (size_t target = 0; target < targets_.size(); ++target) begin_session(target, session, scheduled);
      ++next_arrival_;
    }
    maybe_finish_stage();
  }

  // Closed loop: a worker takes the target's next session, or retires when none is left or time is up.
  void next_closed_loop_session(size_t target, Clock::time_point scheduled) {
    StagePlan& stage = *plan_.stages[stage_index_];
    const bool is_out_of_time = stage.spec().duration_s > 0 &&
                                std::chrono::duration<double>(Clock::now() - stage_start_).count() >= stage.spec().duration_s;
    size_t& next = next_session_for_target_[target];
    const PlannedSession* session = is_out_of_time || is_stopping_ ? nullptr : stage.session(next);
    if (session == nullptr) {
      --num_workers_;
      return;
    }
    lookahead_->reached(stage_index_, next++);
    begin_session(target, *session, scheduled);
  }

  void begin_session(size_t target, const PlannedSession& planned, Clock::time_point scheduled) {
    auto session = std::make_shared<ActiveSession>();
    session->target = target;
    session->planned = &planned;
    if (planned.prefix_group >= 0) {
      const std::string& prefix = plan_.prefix_texts[planned.prefix_group];
      if (sends_messages(targets_[target].api)) {
        session->messages.push_back({"system", prefix});
      } else {
        session->prompt = prefix;
      }
      session->history_tokens = plan_.prefix_tokens[planned.prefix_group];
    } else if (!planned.system_text.empty()) {  // a dataset conversation's own system message
      if (sends_messages(targets_[target].api)) {
        session->messages.push_back({"system", planned.system_text});
      } else {
        session->prompt = planned.system_text;
      }
      session->history_tokens = planned.system_tokens;
    }
    ++num_active_sessions_;
    send_turn(session, scheduled);
  }

  void send_turn(const std::shared_ptr<ActiveSession>& session, Clock::time_point scheduled) {
    const PlannedTurn& turn = session->planned->turns[session->next_turn];
    const TargetSpec& target = targets_[session->target];
    RequestContent content;
    if (sends_messages(target.api)) {
      session->messages.push_back({"user", turn.user_text});
      content.messages = session->messages;
    } else {
      if (!session->prompt.empty()) session->prompt.push_back(' ');
      session->prompt += turn.user_text;
      content.prompt = session->prompt;
    }
    session->history_tokens += turn.user_tokens;
    const size_t record_index = result_.records.size();
    RequestRecord& record = result_.records.emplace_back();
    record.target = session->target;
    record.stage = stage_index_;
    record.session = session->planned->index;
    record.turn = session->next_turn;
    record.model = session->planned->model.empty() ? target.model : session->planned->model;
    record.prefix_group = session->planned->prefix_group;
    record.max_tokens = turn.max_tokens;
    record.client_prompt_tokens = session->history_tokens;
    record.scheduled_ns = since_epoch_ns(scheduled);
    RequestBodyOptions body_options = options_.body;
    body_options.max_tokens = turn.max_tokens;
    if (!body_options.cache_retention.empty() && target.api != ApiKind::kMessages) {
      body_options.prompt_cache_key = fmt::format("s{}-{}", stage_index_, session->planned->index);
    }
    std::string body = build_request_body(target.api, record.model, content, body_options);

    StreamCallbacks callbacks;
    callbacks.on_dispatched = [this, record_index](Clock::time_point at) {
      result_.records[record_index].dispatched_ns = since_epoch_ns(at);
      ++num_in_flight_;
    };
    callbacks.on_event = [this, record_index](std::string_view data, Clock::time_point at) {
      on_event(result_.records[record_index], data, at);
    };
    callbacks.on_finished = [this, record_index, session](ErrorKind kind, int status, std::string detail,
                                                          Clock::time_point at) {
      on_finished(record_index, session, kind, status, std::move(detail), at);
    };
    clients_[session->target]->post_stream(api_path(target.api), std::move(body), options_.timeout, std::move(callbacks));
  }

  // Kept minimal on purpose: the timestamp of every chunk that arrived in the same epoll batch waits for the
  // handlers before it, so per-chunk work here is measurement error. JSON is parsed after the run
  // (finalize_record), or at the end of a turn whose answer the next turn needs.
  void on_event(RequestRecord& record, std::string_view data, Clock::time_point at) {
    record.raw_events.emplace_back(data);
    record.raw_event_ns.push_back(since_epoch_ns(at));
    ++stage_chunks_;
  }

  void on_finished(size_t record_index, const std::shared_ptr<ActiveSession>& session, ErrorKind kind, int status,
                   std::string detail, Clock::time_point at) {
    RequestRecord& record = result_.records[record_index];
    record.end_ns = since_epoch_ns(at);
    record.http_status = status;
    if (record.dispatched_ns >= 0) --num_in_flight_;
    if (kind != ErrorKind::kNone) {
      record.error = kind;
      record.error_detail = std::move(detail);
    }
    ++session->next_turn;
    const bool has_more_turns = session->next_turn < session->planned->turns.size() && !is_stopping_;
    // The next turn needs this answer now; everything else is parsed after the run.
    if (has_more_turns) finalize_record(record, targets_[session->target].api, options_.body.cache_retention);
    ++stage_finished_;
    if (!record.is_ok()) ++stage_failed_;
    if (record.is_ok() && has_more_turns) {
      if (sends_messages(targets_[session->target].api)) {
        session->messages.push_back({"assistant", record.output_text});
      } else {
        session->prompt += record.output_text;
      }
      const double think_ms = session->planned->turns[session->next_turn].think_ms;
      const Clock::time_point scheduled =
          at + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(think_ms));
      session->think_timer = std::make_unique<asio::steady_timer>(io_, scheduled);
      thinking_.insert(session.get());
      session->think_timer->async_wait([this, session, scheduled](boost::system::error_code) {
        thinking_.erase(session.get());
        if (is_stopping_) {
          end_session(*session, Clock::now());
        } else {
          send_turn(session, scheduled);
        }
      });
      return;
    }
    end_session(*session, at);
  }

  void end_session(const ActiveSession& session, Clock::time_point at) {
    --num_active_sessions_;
    if (!plan_.stages[stage_index_]->spec().arrival.is_open_loop()) {
      next_closed_loop_session(session.target, at);
    }
    maybe_finish_stage();
  }

  // Ctrl-C (or SIGTERM): stop sending — no new sessions, turns or stages — let the requests in flight
  // finish, and report what was measured. A second signal quits at once, without a report.
  void wait_for_signal() {
    signals_->async_wait([this](boost::system::error_code error, int signal_number) {
      if (error) return;
      if (is_stopping_) {
        std::fprintf(stderr, "\ntern bench: interrupted again: quitting without a report\n");
        std::_Exit(128 + signal_number);
      }
      std::fprintf(stderr, "\ntern bench: stopping: no new requests; waiting for %zu in flight (again to quit without a report)\n",
                   num_in_flight_);
      stop();
      wait_for_signal();
    });
  }

  void stop() {
    is_stopping_ = true;
    result_.interrupted = true;
    dispatch_timer_.cancel();
    for (ActiveSession* session : thinking_) session->think_timer->cancel();
    maybe_finish_stage();
  }

  void maybe_finish_stage() {
    StagePlan& stage = *plan_.stages[stage_index_];
    const bool is_dispatch_over = stage.spec().arrival.is_open_loop() ? is_stopping_ || stage.session(next_arrival_) == nullptr
                                                                      : num_workers_ == 0;
    if (!is_dispatch_over || num_active_sessions_ > 0 || is_stage_closing_) return;
    is_stage_closing_ = true;
    result_.stages.back().end_ns = since_epoch_ns(Clock::now());
    report_progress();
    // Post rather than recurse: the handler that finished the last request is still on the stack.
    asio::post(io_, [this] {
      is_stage_closing_ = false;
      start_stage(stage_index_ + 1);
    });
  }

  void arm_progress() {
    if (!options_.on_progress) return;
    progress_timer_.expires_after(options_.progress_interval);
    progress_timer_.async_wait([this](boost::system::error_code error) {
      if (error || is_done_) return;
      report_progress();
      arm_progress();
    });
  }

  void report_progress() {
    if (!options_.on_progress || stage_index_ >= plan_.stages.size()) return;
    RunProgress progress;
    progress.stage = stage_index_;
    progress.num_stages = plan_.stages.size();
    progress.stage_label = plan_.stages[stage_index_]->spec().arrival.label();
    progress.num_planned = plan_.stages[stage_index_]->max_requests() * targets_.size();
    progress.stage_duration_s = plan_.stages[stage_index_]->spec().duration_s;
    progress.num_finished = stage_finished_;
    progress.num_failed = stage_failed_;
    progress.num_in_flight = num_in_flight_;
    for (const auto& client : clients_) progress.num_queued += client->num_waiting();
    progress.num_chunks = stage_chunks_;
    progress.stage_elapsed_s = std::chrono::duration<double>(Clock::now() - stage_start_).count();
    options_.on_progress(progress);
  }

  Plan& plan_;
  Lookahead* lookahead_ = nullptr;  // during run()
  const std::vector<TargetSpec>& targets_;
  const RunOptions& options_;
  asio::io_context io_{1};
  asio::steady_timer dispatch_timer_;
  asio::steady_timer progress_timer_;
  std::optional<asio::signal_set> signals_;  // only with RunOptions::stop_on_signals
  std::set<ActiveSession*> thinking_;  // sessions waiting out a think time
  std::vector<std::unique_ptr<HttpStreamClient>> clients_;
  RunResult result_;
  Clock::time_point epoch_;
  Clock::time_point stage_start_;
  size_t stage_index_ = 0;
  size_t next_arrival_ = 0;
  std::vector<size_t> next_session_for_target_;
  int num_workers_ = 0;
  size_t num_active_sessions_ = 0;
  size_t num_in_flight_ = 0;
  size_t stage_finished_ = 0, stage_failed_ = 0;
  uint64_t stage_chunks_ = 0;
  bool is_stage_closing_ = false;
  bool is_done_ = false;
  bool is_stopping_ = false;
};

}  // namespace

Result<RunResult> run_benchmark(Plan& plan, const std::vector<TargetSpec>& targets, const RunOptions& options) {
  if (targets.empty()) return fail("no target to benchmark");
  Runner runner(plan, targets, options);
  return runner.run();
}

Result<RunResult> run_benchmark_sequential(Plan& plan, const std::vector<TargetSpec>& targets,
                                           const RunOptions& options, const std::function<void(size_t)>& on_target) {
  if (targets.empty()) return fail("no target to benchmark");
  RunResult merged;
  for (size_t target = 0; target < targets.size(); ++target) {
    if (on_target) on_target(target);
    auto one = run_benchmark(plan, {targets[target]}, options);
    if (!one) return std::unexpected(one.error());
    merged.interrupted = merged.interrupted || one->interrupted;
    if (target == 0) {
      merged.epoch_steady_ns = one->epoch_steady_ns;
      merged.stages = one->stages;
    }
    // Each run has its own clock origin: move its times so that its stages start where the first
    // target's did. Latencies are differences and do not change; "time into the stage" lines up.
    for (RequestRecord& record : one->records) {
      const int64_t shift = merged.stages[record.stage].start_ns - one->stages[record.stage].start_ns;
      for (int64_t* t : {&record.scheduled_ns, &record.dispatched_ns, &record.first_token_ns, &record.end_ns}) {
        if (*t >= 0) *t += shift;
      }
      for (int64_t& t : record.chunk_ns) t += shift;
      for (int64_t& t : record.raw_event_ns) t += shift;
      record.target = target;
      merged.stages[record.stage].end_ns = std::max(merged.stages[record.stage].end_ns, record.end_ns);
      merged.records.push_back(std::move(record));
    }
    if (one->interrupted) break;  // the user stopped the run: no further targets
  }
  return merged;
}

void count_client_tokens(RunResult& result, const PromptBuilder& builder) {
  // Answers of earlier turns, per (target, stage, session), in turn order.
  std::map<std::tuple<size_t, size_t, size_t>, int64_t> history_answers;
  std::vector<size_t> order(result.records.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return result.records[a].turn < result.records[b].turn;
  });
  for (size_t index : order) {
    RequestRecord& record = result.records[index];
    record.client_output_tokens = builder.count_tokens(record.output_text);
    int64_t& answers = history_answers[{record.target, record.stage, record.session}];
    record.client_prompt_tokens += answers;
    answers += record.client_output_tokens;
  }
}

}  // namespace tern::bench
