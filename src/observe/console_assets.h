#pragma once
// The web console's page (src/observe/console/console.html), compiled in at build time.

#include <string_view>

namespace tern::observe {

std::string_view console_html();

}  // namespace tern::observe
