// The safetensors container of a model file: an 8-byte header length, a JSON header that maps
// tensor names to dtype, shape and byte offsets (and an optional "__metadata__" of strings), then
// the data buffer. Reading checks the header's length, its JSON, every entry's dtype, shape and
// offsets, and that the tensors tile the buffer; nothing is read out of bounds. Internal to nn/.
#pragma once

#include "file_json.hpp"
#include "model_spec.hpp"

#include <map>
#include <optional>
#include <string>

namespace ax::nn::detail {

struct Container {
  std::map<std::string, std::string> metadata;
  std::map<std::string, TensorData> tensors;  // floating-point tensors are views of `file`'s bytes
};

// Faults (without the file's name) on anything the container may not hold. The tensors keep
// views into `file` (and share its owner); no value is read here.
Container read_container(const StoredBytes& file);

// The container's bytes: the tensors sorted by name and tiling the buffer, F32 unless the tensor
// is F64 or `all_f64`; tensors of non-floating dtypes are left out (they carry no values). The
// header is padded with spaces so the data starts 8-aligned, as safetensors does.
std::string write_container(const std::map<std::string, std::string>& metadata,
                            const std::map<std::string, TensorData>& tensors, bool all_f64);

// The flat index of the tensor's first NaN or Inf, if it holds one.
std::optional<std::size_t> first_non_finite(const TensorData& tensor);

// Whether safetensors defines the dtype.
bool is_known_dtype(const std::string& dtype);
// The dtypes whose values are kept (widened to double) and that a node may use.
bool is_parameter_dtype(const std::string& dtype);
// A shape of non-negative integers with at most 2^40 elements; faults naming `owner` otherwise.
std::vector<std::size_t> read_shape(const json& value, const std::string& owner);

}  // namespace ax::nn::detail
