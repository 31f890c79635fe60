#include "util/tern_home.h"

#include <cstdlib>

namespace tern {

std::string tern_home() {
  if (const char* home = std::getenv("TERN_HOME"); home != nullptr && *home != '\0') return home;
  const char* user_home = std::getenv("HOME");
  return std::string(user_home != nullptr ? user_home : ".") + "/.cache/tern";
}

}  // namespace tern
