#include "file_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace ax::nn::detail {

// ---------------------------------------------------------------------------------------------
// Text for messages: every message is one line, whatever the file holds.

std::string one_line(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string in_quotes(const std::string& name) {
  return json(name).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string describe(const json& value) {
  auto is_scalar = [](const json& v) { return !v.is_structured(); };
  if (value.is_number_float() && !std::isfinite(value.get<double>()))  // dump() would say null
    return std::isnan(value.get<double>()) ? "NaN" : value.get<double>() > 0 ? "Inf" : "-Inf";
  if (is_scalar(value)) return value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (value.is_array() && value.size() <= 8 && std::all_of(value.begin(), value.end(), is_scalar)) {
    std::string out = "[";
    for (std::size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + describe(value[i]);
    return out + "]";
  }
  if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
  return "an object";
}

std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find("] ");
    if (close != std::string::npos) text.erase(0, close + 2);
  }
  return one_line(text);
}

// ---------------------------------------------------------------------------------------------
// JSON input

namespace {

// Where `text` stops being valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF);
// npos if it is valid throughout.
std::size_t invalid_utf8_at(const std::string& text) {
  static const std::uint32_t kMinCodePoint[] = {0, 0, 0x80, 0x800, 0x10000};  // by sequence length
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    std::size_t length;
    std::uint32_t code_point;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07;
    } else {
      return i;
    }
    if (text.size() - i < length) return i;
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < kMinCodePoint[length] || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF))
      return i;
    i += length;
  }
  return std::string::npos;
}

}  // namespace

void check_utf8(const std::string& text, const std::string& what) {
  const std::size_t at = invalid_utf8_at(text);
  if (at != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[at]));
    fault(what + " is not valid UTF-8 (byte " + byte + " at offset " + std::to_string(at) + ")");
  }
}

json parse_json(const std::string& text, const std::string& what) {
  // nlohmann takes a NUL byte for the end of the input, so "{}\0anything" would pass; JSON text
  // never holds a raw NUL (not even inside strings).
  const std::size_t nul = text.find('\0');
  if (nul != std::string::npos) fault(what + " is not valid JSON (a NUL byte at offset " + std::to_string(nul) + ")");
  std::vector<std::set<std::string>> keys_of_open_containers;  // arrays' sets stay empty
  auto check = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (keys_of_open_containers.size() >= kMaxJsonDepth)
          fault(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        keys_of_open_containers.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        keys_of_open_containers.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!keys_of_open_containers.back().insert(key).second)
          fault(what + " has the key " + in_quotes(key) + " twice in one object");
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, check);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    fault(what + " is not valid JSON (" + json_error_text(e) + ")");
  }
}

std::optional<std::uint64_t> as_unsigned(const json& value) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0) return value.get<std::uint64_t>();
  return std::nullopt;
}

const json* find_member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const json& require_member(const json& object, const char* key, const std::string& owner) {
  const json* member = find_member(object, key);
  if (!member) fault(owner + " has no \"" + key + "\"");
  return *member;
}

}  // namespace ax::nn::detail
