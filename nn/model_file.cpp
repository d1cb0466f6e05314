// Reading and writing the model file (docs/format.md): the safetensors container
// (nn/safetensors), the graph document in its metadata (nn/graph_schema), and the toy format
// (nn/toy_model). The checks run in the order the file is laid out: the container (length,
// header, tensor entries, tiling), the graph, then each node's parameters. Faults are raised
// without the file's name; the public functions here add it.
#include "model_file.hpp"

#include "file_json.hpp"
#include "graph_schema.hpp"
#include "safetensors.hpp"
#include "toy_model.hpp"

#include "../autodiff/ops/registry.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ax::nn {

using namespace detail;

namespace {

std::string read_file_bytes(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) fault("is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fault(std::string("cannot open the file (") + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fault("cannot read the file");
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), size);
  if (in.gcount() != size) fault("cannot read the file's " + std::to_string(size) + " bytes");
  return bytes;
}

// A read-only mapping of a file, unmapped when the last tensor viewing it goes.
struct Mapping {
  void* address = nullptr;
  std::size_t size = 0;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(void* a, std::size_t n) : address(a), size(n) {}
  ~Mapping() { munmap(address, size); }
};

// The file's bytes as a private mapping, its pages mapped at once (MAP_POPULATE: one pass in the
// kernel instead of a page fault every 64 KiB): the checks read the bytes where they lie, and
// loading either uses a tensor there in place (its dtype the run's) or converts it into the tape,
// giving the pages back as it goes. Mapped read-only to populate it (a writable private mapping
// would be populated by copying every page), then made writable: a write to a parameter used in
// place copies that page for this process and never reaches the file.
// A file that cannot be mapped (a pipe, an empty file) is read into memory instead.
StoredBytes map_file(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) fault("is a directory, not a file");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fault(std::string("cannot open the file (") + std::strerror(errno) + ")");
  struct stat info {};
  const bool regular = fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0;
  void* address = regular ? mmap(nullptr, static_cast<std::size_t>(info.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : MAP_FAILED;
  close(fd);  // the mapping keeps the file
  if (address != MAP_FAILED && mprotect(address, static_cast<std::size_t>(info.st_size), PROT_READ | PROT_WRITE) != 0) {
    munmap(address, static_cast<std::size_t>(info.st_size));
    address = MAP_FAILED;
  }
  StoredBytes file;
  if (address == MAP_FAILED) {
    auto bytes = std::make_shared<const std::string>(read_file_bytes(path));
    file.data = reinterpret_cast<const unsigned char*>(bytes->data());
    file.size = bytes->size();
    file.owner = std::move(bytes);
    return file;
  }
  file.size = static_cast<std::size_t>(info.st_size);
  file.data = static_cast<const unsigned char*>(address);
  file.owner = std::make_shared<const Mapping>(address, file.size);
  file.mapped = true;
  return file;
}

// Bytes in memory (parse_model, the fuzz target): a copy the tensors can keep viewing.
StoredBytes copy_bytes(const std::string& bytes) {
  auto copy = std::make_shared<const std::string>(bytes);
  StoredBytes file;
  file.data = reinterpret_cast<const unsigned char*>(copy->data());
  file.size = copy->size();
  file.owner = std::move(copy);
  return file;
}

ModelSpec model_from_bytes(const StoredBytes& bytes) {
  Container container = read_container(bytes);
  const auto graph_text = container.metadata.find("axiomatic.graph");
  if (graph_text == container.metadata.end())
    fault("no graph: __metadata__ has no \"axiomatic.graph\" (not an axiomatic model file?)");
  const std::string what = "graph (__metadata__[\"axiomatic.graph\"])";
  ModelSpec model;
  model.graph = graph_from_json(parse_json(graph_text->second, what));
  model.tensors = std::move(container.tensors);
  check_parameters(model.graph, model.tensors);
  return model;
}

std::string serialize(const ModelSpec& model, const WriteOptions& options) {
  return write_container({{"axiomatic.graph", graph_document(model.graph).dump()}}, model.tensors,
                         options.floats_as_f64);
}

}  // namespace

NodeSpec make_node(const std::string& name, const std::string& op, std::vector<std::string> inputs) {
  const ops::OpInfo* info = ops::find_file_op(op);
  if (!info) throw Error("node '" + name + "': unknown op '" + op + "' (the model file has " + ops::file_op_names() + ")");
  NodeSpec node;
  node.name = name;
  node.op = op;
  node.inputs = std::move(inputs);
  info->set_defaults(node.attrs);
  return node;
}

// ---------------------------------------------------------------------------------------------

nlohmann::json graph_to_json(const GraphSpec& graph) {
  return named("graph", [&] { return graph_document(graph); });
}

GraphSpec parse_graph(const nlohmann::json& graph, const std::string& name) {
  return named(name, [&] { return graph_from_json(graph); });
}

ModelSpec parse_model(const std::string& bytes, const std::string& name) {
  return named(name, [&] { return model_from_bytes(copy_bytes(bytes)); });
}

ModelSpec read_model(const std::string& path) {
  return named(path, [&] { return model_from_bytes(map_file(path)); });
}

ModelSpec read_toy_json(const std::string& path) {
  return named(path, [&] { return toy_from_text(read_file_bytes(path)); });
}

std::string serialize_model(const ModelSpec& model, const WriteOptions& options) {
  const std::string bytes = named("model", [&] { return serialize(model, options); });
  parse_model(bytes, "model");  // never hand out what the reader refuses
  return bytes;
}

void write_model(const std::string& path, const ModelSpec& model, const WriteOptions& options) {
  const std::string bytes = named(path, [&] { return serialize(model, options); });
  parse_model(bytes, path);
  // Written beside the target, then renamed over it, never truncated in place: a process that
  // has the old file mapped (parameters are used in place from the mapping) keeps the old bytes.
  const std::string partial = path + ".partial-" + std::to_string(::getpid());
  named(path, [&] {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) fault(std::string("cannot open the file for writing (") + std::strerror(errno) + ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(partial.c_str());
      fault("cannot write the file");
    }
    if (std::rename(partial.c_str(), path.c_str()) != 0) {
      const std::string reason = std::strerror(errno);
      std::remove(partial.c_str());
      fault("cannot replace the file (" + reason + ")");
    }
  });
}

ModelSpec load_model(const std::string& path) {
  const std::string suffix = ".json";
  const bool toy = path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  return toy ? read_toy_json(path) : read_model(path);
}

}  // namespace ax::nn
