// The fake upstream as a program, for end-to-end tests in Python: prints "port N" and serves until
// stdin closes.
#include <cstdio>
#include <iostream>
#include <string>

#include "upstream_fixture.h"

int main() {
  tern::testing::UpstreamFixture fixture(4);
  std::printf("port %u\n", fixture.port());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
