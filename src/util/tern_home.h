#pragma once
// Where tern keeps its state: models, wheels, fixtures, the key store and the ledger.

#include <string>

namespace tern {

/// $TERN_HOME, else ~/.cache/tern.
std::string tern_home();

}  // namespace tern
