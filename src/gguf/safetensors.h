#pragma once
// Reader for safetensors, the tensor format of Hugging Face checkpoints and PEFT adapters
// (adapter_model.safetensors):
//
//   | header length N: u64 little-endian | N bytes of JSON header | data section |
//   header: {"<tensor name>": {"dtype": "F16", "shape": [rows, cols], "data_offsets": [begin, end]},
//            ..., "__metadata__": {string: string}}   offsets relative to the data section
//
// Zero-copy like the GGUF reader: tensor data are views into the mapped file. Every length and offset
// comes from an untrusted file and is checked (header within the file and at most 100 MB, offsets
// inside the data section, byte count = product of the shape x element size) before use.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "util/mapped_file.h"
#include "util/result.h"

namespace tern::gguf {

struct SafeTensor {
  DType type = DType::F32;       ///< F32, F16 or BF16 (other dtypes are refused at open)
  std::vector<uint64_t> shape;   ///< PyTorch order: shape[0] is the slowest-varying (rows)
  std::span<const uint8_t> data;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  /// Parses bytes that outlive the result (tests, fuzzing).
  static Result<SafetensorsFile> parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::map<std::string, SafeTensor>& tensors() const { return tensors_; }
  const std::string& name() const { return name_; }

 private:
  MappedFile file_;
  std::string name_;
  std::map<std::string, SafeTensor> tensors_;
};

}  // namespace tern::gguf
