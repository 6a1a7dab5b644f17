#pragma once
// safetensors checkpoint I/O: the file format the PyTorch reference reads and writes.
//
// Layout: an 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON (an object mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} with offsets relative to the first byte after
// the header, plus an optional "__metadata__" object of string -> string), then the raw little-endian data.
//
// Reading validates everything before any tensor is returned: header length within the file, strict JSON
// (UTF-8, no duplicate keys, nothing but padding after the object), known dtypes, non-negative integer shapes,
// offsets consistent with dtype size x numel, entries that tile the data section exactly (no overlap, no gap,
// nothing left over). Every error names the file and, where there is one, the tensor; file problems throw
// std::runtime_error, caller mistakes (an undefined tensor to save, a reserved name) std::invalid_argument.
//
// Writing sorts the entries by name, lays the data out in that order, pads the header with spaces to a multiple
// of 8 bytes, and is atomic: a temporary file in the same directory is written, fsync'ed and renamed over the
// target, so a crash or an error never leaves a half-written file under the target's name.
//
// Supported dtypes: F32, F64, BF16, I32, I64, BOOL. Other safetensors dtypes (F16, I8, U8, ...) are recognised
// and refused with a message saying so.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section, end exclusive
  uint64_t end = 0;
};

struct SafetensorsInfo {
  std::string path;
  std::vector<SafetensorsEntry> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t header_size = 0;  // N, the JSON header's length in bytes (padding included)
  uint64_t data_size = 0;    // bytes after the header

  const SafetensorsEntry* find(const std::string& name) const;  // nullptr when absent
  std::vector<std::string> names() const;
};

// The safetensors dtype code ("F32", "BF16", "I64", ...) of a DType, and back (throws on unknown codes).
std::string safetensors_dtype_code(DType t);
DType dtype_from_safetensors_code(const std::string& code);

// Reads and validates the header (and the file size against it) without reading tensor data.
SafetensorsInfo read_safetensors_header(const std::string& path);

// Loads every tensor (CPU, contiguous, dtype as stored).
std::map<std::string, Tensor> load_safetensors(const std::string& path);

// Writes `tensors` (moved to CPU and made contiguous first) atomically. Tensor names must not be "__metadata__";
// names and metadata must be valid UTF-8.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

struct LoadIntoOptions {
  bool allow_cast = false;        // a dtype mismatch is converted instead of reported
  bool allow_unexpected = false;  // names in the file that the model does not have are ignored
  bool allow_missing = false;     // model tensors absent from the file keep their values
};

// Checks `loaded` against `expected` (e.g. a module's named parameters) and throws ONE std::runtime_error that
// names `file` and lists every missing name, every unexpected name and every shape/dtype mismatch (expected vs
// found). Only when nothing is wrong are the values copied into the expected tensors (which may live on CUDA).
void load_into(const std::map<std::string, Tensor>& loaded, const std::map<std::string, Tensor>& expected,
               const std::string& file, const LoadIntoOptions& options = {});

// load_safetensors(path) followed by load_into(..., path, options).
void load_safetensors_into(const std::string& path, const std::map<std::string, Tensor>& expected,
                           const LoadIntoOptions& options = {});

}  // namespace hydra
