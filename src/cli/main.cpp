// The `tern` binary: one program, one subcommand per job (ARCHITECTURE.md). Subcommands live in their
// own files; this one only wires them up.

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "cli/commands.h"
#include "kernels/cpu/cpu_features.h"

namespace {

/// "tern 0.1.0 (kernels: avx2; CPU: AMD EPYC 7B13)": which kernels run here, for bug reports and for
/// the figures in benchmark tables.
std::string version_text() {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("model name")) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return "tern 0.1.0 (kernels: " + std::string(tern::kernels::isa_name(tern::kernels::best_isa())) + "; CPU: " + cpu + ")";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tern: serve, run and benchmark open-weight LLMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text());
  std::map<std::string, tern::cli::Runner> runners;
  runners["pull"] = tern::cli::add_pull_command(app);
  runners["models"] = tern::cli::add_models_command(app);
  runners["inspect"] = tern::cli::add_inspect_command(app);
  runners["tokenize"] = tern::cli::add_tokenize_command(app);
  runners["bench"] = tern::cli::add_bench_command(app);
  runners["run"] = tern::cli::add_run_command(app);
  runners["chat"] = tern::cli::add_chat_command(app);
  runners["serve"] = tern::cli::add_serve_command(app);
  runners["keys"] = tern::cli::add_keys_command(app);
  runners["usage"] = tern::cli::add_usage_command(app);
  CLI11_PARSE(app, argc, argv);
  for (CLI::App* command : app.get_subcommands()) {
    return runners.at(command->get_name())();
  }
  return 2;
}
