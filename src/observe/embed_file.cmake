# Writes a C++ source defining `std::string_view NAME()` that returns the bytes of INPUT (cmake -P, at
# build time): the web console's page is compiled into the binary, nothing is read at run time.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by embed_file.cmake; do not edit.\n#include <string_view>\n\nnamespace tern::observe {\nnamespace {\nconstexpr char kBytes[] = {${bytes}'\\0'};\n}  // namespace\n\nstd::string_view ${NAME}() { return {kBytes, ${size}}; }\n\n}  // namespace tern::observe\n")
