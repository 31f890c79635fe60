// bench_fixture_server: the deterministic streaming server of the tests as a program, for trying
// `tern bench` by hand and for the cross-check with an independent client (bench/crosscheck_guidellm.py).

#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "fixture_server.h"

int main(int argc, char** argv) {
  tern::bench::testing::FixtureConfig config;
  config.port = 8123;
  CLI::App app{"Deterministic OpenAI-compatible streaming server with known delays"};
  app.add_option("--port", config.port, "Port (0: any)")->capture_default_str();
  app.add_option("--ttft-ms", config.ttft_ms, "Delay from request to first chunk")->capture_default_str();
  app.add_option("--itl-ms", config.itl_ms, "Delay between chunks")->capture_default_str();
  app.add_option("--tokens-per-chunk", config.tokens_per_chunk, "Tokens in each chunk")->capture_default_str();
  app.add_option("--default-output-tokens", config.default_output_tokens, "Tokens when max_tokens is absent")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // Block the signals before the server thread starts so that it inherits the mask and sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  tern::bench::testing::FixtureServer server(config);
  server.start();
  std::printf("listening on %s (ttft %.3f ms, itl %.3f ms)\n", server.base_url().c_str(), config.ttft_ms, config.itl_ms);
  std::fflush(stdout);
  int received = 0;
  sigwait(&signals, &received);
  return 0;
}
