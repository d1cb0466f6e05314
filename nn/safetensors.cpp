#include "safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>

#include <sys/mman.h>
#include <unistd.h>

namespace ax::nn::detail {
namespace {

// ---------------------------------------------------------------------------------------------
// dtypes and little-endian values

struct DtypeInfo {
  const char* name;
  std::size_t size;
};

// Every dtype safetensors defines (0.4 and 0.5); any other string is a fault.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string dtype_list() {
  std::string out;
  for (const DtypeInfo& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

}  // namespace

bool is_known_dtype(const std::string& dtype) { return find_dtype(dtype) != nullptr; }

bool is_parameter_dtype(const std::string& dtype) {
  return dtype == "F16" || dtype == "BF16" || dtype == "F32" || dtype == "F64";
}

namespace {

// Little-endian, from bytes with no alignment promised: assembled byte by byte.
template <class Unsigned>
Unsigned load_le(const unsigned char* bytes) {
  Unsigned value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) value |= static_cast<Unsigned>(bytes[i]) << (8 * i);
  return value;
}

template <class Unsigned>
void store_le(std::string& out, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

// IEEE binary16 -> double, exactly: every half is m * 2^e with |m| < 2^11.
double widen_f16(std::uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1F;
  const int mantissa = bits & 0x3FF;
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0x1F)
    return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);  // zero and subnormals
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

// bfloat16 is the upper half of a binary32.
double widen_bf16(std::uint16_t bits) {
  const std::uint32_t wide = std::uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

double load_value(const std::string& dtype, const unsigned char* bytes) {
  if (dtype == "F16") return widen_f16(load_le<std::uint16_t>(bytes));
  if (dtype == "BF16") return widen_bf16(load_le<std::uint16_t>(bytes));
  if (dtype == "F32") {
    const std::uint32_t bits = load_le<std::uint32_t>(bytes);
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }
  const std::uint64_t bits = load_le<std::uint64_t>(bytes);  // F64
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// ---------------------------------------------------------------------------------------------
// The container

// One tensor of the header, checked against itself and the buffer's size, not yet read.
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<std::size_t> shape;
  std::uint64_t begin = 0, end = 0;
};

}  // namespace

// Each dimension is bounded before it is multiplied, so no product can overflow.
std::vector<std::size_t> read_shape(const json& value, const std::string& owner) {
  if (!value.is_array()) fault(owner + ": shape must be a list of non-negative integers, found " + describe(value));
  std::vector<std::size_t> shape;
  for (const json& dim : value) {
    const auto size = as_unsigned(dim);
    if (!size) fault(owner + ": shape must be a list of non-negative integers, found " + describe(value));
    if (*size > kMaxElements) fault(owner + ": shape has a dimension of " + std::to_string(*size) + ", over 2^40");
    shape.push_back(*size);
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return shape;  // zero elements
  std::uint64_t count = 1;
  for (std::size_t size : shape) {
    if (count > kMaxElements / size) fault(owner + ": shape " + shape_text(shape) + " holds more than 2^40 elements");
    count *= size;
  }
  return shape;
}

namespace {

std::uint64_t element_count(const std::vector<std::size_t>& shape) {
  std::uint64_t count = 1;
  for (std::size_t size : shape) count *= size;  // bounded by read_shape
  return count;
}

Entry read_entry(const std::string& name, const json& value, std::uint64_t buffer_size) {
  const std::string owner = "tensor " + in_quotes(name);
  if (!value.is_object())
    fault(owner + ": header entry is " + describe(value) + ", not {\"dtype\", \"shape\", \"data_offsets\"}");
  Entry entry;
  entry.name = name;

  const json& dtype = require_member(value, "dtype", owner);
  if (!dtype.is_string()) fault(owner + ": dtype must be a string, found " + describe(dtype));
  entry.dtype = dtype.get<std::string>();
  const DtypeInfo* info = find_dtype(entry.dtype);
  if (!info)
    fault(owner + ": undefined dtype " + in_quotes(entry.dtype) + " (safetensors defines " + dtype_list() + ")");

  entry.shape = read_shape(require_member(value, "shape", owner), owner);

  const json& offsets = require_member(value, "data_offsets", owner);
  std::optional<std::uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) begin = as_unsigned(offsets[0]), end = as_unsigned(offsets[1]);
  if (!begin || !end)
    fault(owner + ": data_offsets must be [begin, end], two non-negative integers, found " + describe(offsets));
  entry.begin = *begin, entry.end = *end;
  const std::string range = "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
  if (entry.begin > entry.end) fault(owner + ": " + range + " end before they begin");
  if (entry.end > buffer_size)
    fault(owner + ": " + range + " run past the end of the data buffer (" + std::to_string(buffer_size) + " bytes)");

  const std::uint64_t needed = element_count(entry.shape) * info->size;  // <= 2^43: no overflow
  if (entry.end - entry.begin != needed)
    fault(owner + ": " + range + " hold " + std::to_string(entry.end - entry.begin) + " bytes, but shape " +
          shape_text(entry.shape) + " of " + entry.dtype + " needs " + std::to_string(needed));
  return entry;
}

std::map<std::string, std::string> read_metadata(const json& value) {
  if (!value.is_object()) fault("__metadata__ must map strings to strings, found " + describe(value));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string())
      fault("__metadata__ must map strings to strings; key " + in_quotes(key) + " holds " + describe(text));
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

// The safetensors reference reader's rule: sorted by begin, the tensors cover the data buffer
// exactly, with no gap, no overlap and no trailing bytes.
void check_tiling(std::vector<Entry> entries, std::uint64_t buffer_size) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  auto bytes = [](const Entry& e) { return " (bytes " + std::to_string(e.begin) + ".." + std::to_string(e.end) + ")"; };
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin > covered && !previous)
      fault("data buffer has a gap: the first tensor " + in_quotes(entry.name) + bytes(entry) + " does not start at 0");
    if (entry.begin > covered)
      fault("data buffer has a gap of " + std::to_string(entry.begin - covered) + " bytes between tensor " +
            in_quotes(previous->name) + bytes(*previous) + " and tensor " + in_quotes(entry.name) + bytes(entry));
    if (entry.begin < covered)
      fault("tensor " + in_quotes(entry.name) + bytes(entry) + " overlaps tensor " + in_quotes(previous->name) +
            bytes(*previous));
    covered = entry.end;
    previous = &entry;
  }
  if (covered != buffer_size)
    fault("data buffer has " + std::to_string(buffer_size - covered) + " trailing bytes after the last tensor (" +
          std::to_string(buffer_size) + " bytes, tensors cover " + std::to_string(covered) + ")");
}

// The tensor as a view of its bytes: nothing is read or converted here.
TensorData stored_tensor(const Entry& entry, const StoredBytes& file, const unsigned char* buffer) {
  TensorData tensor;
  tensor.dtype = entry.dtype;
  tensor.shape = entry.shape;
  if (!is_parameter_dtype(entry.dtype)) return tensor;  // kept for its name, never used
  tensor.stored = file;
  tensor.stored.data = buffer + entry.begin;
  tensor.stored.size = entry.end - entry.begin;
  return tensor;
}

}  // namespace

Container read_container(const StoredBytes& file) {
  const std::size_t file_size = file.size;
  if (file_size < 8)
    fault("file is " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");
  const unsigned char* bytes = file.data;
  const std::uint64_t header_size = load_le<std::uint64_t>(bytes);
  if (header_size > kMaxHeaderBytes)
    fault("header length " + std::to_string(header_size) + " is over the limit of 100 MiB");
  if (header_size > file_size - 8)
    fault("header length " + std::to_string(header_size) + " runs past the end of the file (" +
          std::to_string(file_size) + " bytes)");

  const std::string header(reinterpret_cast<const char*>(bytes) + 8, header_size);
  check_utf8(header, "header");
  // safetensors: the header starts with '{' and may be padded at the end with spaces.
  if (header.empty() || header[0] != '{') fault("header is not a JSON object (it must start with '{')");
  const json document = parse_json(header, "header");
  if (!document.is_object()) fault("header is not a JSON object");

  const std::uint64_t buffer_size = file_size - 8 - header_size;
  Container container;
  std::vector<Entry> entries;
  for (const auto& [key, value] : document.items()) {
    if (key == "__metadata__")
      container.metadata = read_metadata(value);
    else
      entries.push_back(read_entry(key, value, buffer_size));
  }
  check_tiling(entries, buffer_size);
  const unsigned char* buffer = bytes + 8 + header_size;
  for (const Entry& entry : entries) container.tensors[entry.name] = stored_tensor(entry, file, buffer);
  return container;
}

namespace {

std::string tensor_bytes(const std::string& name, const TensorData& tensor, const std::string& dtype) {
  const std::uint64_t count = element_count(read_shape(json(tensor.shape), "tensor " + in_quotes(name)));
  const std::vector<double> values = widened_values(tensor);
  if (values.size() != count)
    fault("tensor " + in_quotes(name) + " holds " + std::to_string(values.size()) + " values, but shape " +
          shape_text(tensor.shape) + " has " + std::to_string(count));
  std::string bytes;
  bytes.reserve(values.size() * (dtype == "F64" ? 8 : 4));
  for (double value : values) {
    if (dtype == "F64") {
      std::uint64_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      store_le(bytes, bits);
    } else {
      const float narrow = static_cast<float>(value);
      std::uint32_t bits;
      std::memcpy(&bits, &narrow, sizeof bits);
      store_le(bytes, bits);
    }
  }
  return bytes;
}

}  // namespace

std::string write_container(const std::map<std::string, std::string>& metadata,
                            const std::map<std::string, TensorData>& tensors, bool all_f64) {
  json header = json::object();
  header["__metadata__"] = metadata;
  std::string data;
  for (const auto& [name, tensor] : tensors) {  // std::map: sorted by name
    if (name == "__metadata__") fault("a tensor may not be named \"__metadata__\" (the header's metadata key)");
    if (!find_dtype(tensor.dtype)) fault("tensor " + in_quotes(name) + ": undefined dtype " + in_quotes(tensor.dtype));
    if (!is_parameter_dtype(tensor.dtype)) continue;  // no values kept to write
    const std::string dtype = all_f64 || tensor.dtype == "F64" ? "F64" : "F32";
    const std::size_t begin = data.size();
    data += tensor_bytes(name, tensor, dtype);
    header[name] = {{"dtype", dtype}, {"shape", tensor.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // the data starts 8-aligned, as safetensors does
  std::string bytes;
  store_le(bytes, std::uint64_t{header_text.size()});
  return bytes + header_text + data;
}

}  // namespace ax::nn::detail

// ---------------------------------------------------------------------------------------------
// Reading a tensor's values, wherever they are kept

namespace ax::nn {

using detail::find_dtype;

std::size_t element_count(const TensorData& tensor) {
  std::size_t count = 1;
  for (std::size_t size : tensor.shape) count *= size;
  return count;
}

namespace {
// Values set in code win over the file's bytes.
bool reads_stored(const TensorData& tensor) { return tensor.stored.data && tensor.values.empty(); }
}  // namespace

bool has_values(const TensorData& tensor) {
  if (!detail::is_parameter_dtype(tensor.dtype)) return false;
  const std::size_t count = element_count(tensor);
  if (reads_stored(tensor)) return tensor.stored.size == count * find_dtype(tensor.dtype)->size;
  return tensor.values.size() == count;
}

namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// n stored values of type Stored (a little-endian host reads them as they are) converted to T.
template <class Stored, class T>
void convert(const unsigned char* bytes, std::size_t n, T* out) {
  if constexpr (std::is_same_v<Stored, T> && kLittleEndian) {
    std::memcpy(out, bytes, n * sizeof(T));
  } else if constexpr (kLittleEndian) {
    for (std::size_t i = 0; i < n; ++i) {
      Stored value;
      std::memcpy(&value, bytes + i * sizeof(Stored), sizeof value);
      out[i] = static_cast<T>(value);
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(detail::load_value(sizeof(Stored) == 4 ? "F32" : "F64", bytes + i * sizeof(Stored)));
  }
}

}  // namespace

namespace {

// Gives back the whole pages of a mapped file inside [from, from + size).
void release_range(const StoredBytes& file, const unsigned char* from, std::size_t size) {
  if (!file.mapped || size == 0) return;
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(from);
  const std::uintptr_t first = (begin + page - 1) / page * page;
  const std::uintptr_t last = (begin + size) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

// A large tensor is copied in blocks of this many bytes, each block's mapped pages given back
// once copied: while a 400 MB weight moves into the tape, the file's pages and the tape's
// buffer together stay within the file's size and a block.
constexpr std::size_t kBlockBytes = std::size_t(8) << 20;

// Calls f(first element, element count) over [0, n) in blocks of kBlockBytes, then (`release`)
// gives the block's pages back. The finiteness check keeps them: the copy reads them next.
template <class F>
void in_blocks(const TensorData& tensor, std::size_t element_size, F f, bool release = true) {
  const std::size_t n = element_count(tensor), step = kBlockBytes / element_size;
  for (std::size_t i = 0; i < n; i += step) {
    const std::size_t count = std::min(step, n - i);
    f(i, count);
    if (release) release_range(tensor.stored, tensor.stored.data + i * element_size, count * element_size);
  }
}

}  // namespace

template <class T>
void copy_values(const TensorData& tensor, T* out) {
  if (!has_values(tensor)) throw Error("tensor of dtype " + tensor.dtype + " carries no values");
  if (!reads_stored(tensor)) {
    std::transform(tensor.values.begin(), tensor.values.end(), out, [](double v) { return static_cast<T>(v); });
    return;
  }
  const unsigned char* bytes = tensor.stored.data;
  const std::size_t size = find_dtype(tensor.dtype)->size;
  in_blocks(tensor, size, [&](std::size_t i, std::size_t count) {
    if (tensor.dtype == "F32") return convert<float>(bytes + i * 4, count, out + i);
    if (tensor.dtype == "F64") return convert<double>(bytes + i * 8, count, out + i);
    for (std::size_t k = i; k < i + count; ++k)  // F16, BF16
      out[k] = static_cast<T>(detail::load_value(tensor.dtype, bytes + k * 2));
  });
}

template void copy_values(const TensorData&, float*);
template void copy_values(const TensorData&, double*);

template <class T>
T* values_in_place(const TensorData& tensor) {
  const char* dtype = std::is_same_v<T, float> ? "F32" : "F64";
  if (!kLittleEndian || !tensor.stored.mapped || !reads_stored(tensor) || tensor.dtype != dtype || !has_values(tensor))
    return nullptr;
  if (reinterpret_cast<std::uintptr_t>(tensor.stored.data) % alignof(T) != 0) return nullptr;
  return reinterpret_cast<T*>(const_cast<unsigned char*>(tensor.stored.data));
}

template float* values_in_place(const TensorData&);
template double* values_in_place(const TensorData&);

std::vector<double> widened_values(const TensorData& tensor) {
  if (!reads_stored(tensor) || !has_values(tensor)) return tensor.values;
  std::vector<double> values(element_count(tensor));
  copy_values(tensor, values.data());
  return values;
}

std::vector<double>& own_values(TensorData& tensor) {
  if (reads_stored(tensor)) {
    tensor.values = widened_values(tensor);
    tensor.stored = {};
  }
  return tensor.values;
}

namespace {

// Whether any of n little-endian IEEE values of `Bits` width has an all-ones exponent (NaN or
// Inf): one OR over masked words, which the compiler vectorizes, so checking a large file costs
// about as much as reading it.
template <class Bits>
bool any_non_finite(const unsigned char* bytes, std::size_t n, Bits exponent) {
  Bits found = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, bytes + i * sizeof(Bits), sizeof bits);
    found |= static_cast<Bits>((bits & exponent) == exponent);
  }
  return found != 0;
}

}  // namespace

std::optional<std::size_t> detail::first_non_finite(const TensorData& tensor) {
  if (reads_stored(tensor) && kLittleEndian && (tensor.dtype == "F32" || tensor.dtype == "F64")) {
    // skip the widening when every value is finite
    const unsigned char* bytes = tensor.stored.data;
    const bool f32 = tensor.dtype == "F32";
    bool found = false;
    in_blocks(tensor, f32 ? 4 : 8, [&](std::size_t i, std::size_t count) {
      found = found || (f32 ? any_non_finite<std::uint32_t>(bytes + i * 4, count, 0x7F800000u)
                            : any_non_finite<std::uint64_t>(bytes + i * 8, count, 0x7FF0000000000000ull));
    }, false);
    if (!found) return std::nullopt;
  }
  const std::vector<double> values = widened_values(tensor);
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) return i;
  return std::nullopt;
}

// Whole pages inside the tensor's bytes only: a neighbour's pages stay as they are.
void release_pages(const TensorData& tensor) { release_range(tensor.stored, tensor.stored.data, tensor.stored.size); }

}  // namespace ax::nn
