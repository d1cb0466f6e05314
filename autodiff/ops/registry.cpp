// The registry: every family's OpList gathered into one table of OpInfo.
#include "registry.hpp"

#include "../ops.hpp"

namespace ax::ops {
namespace {

template <class Op>
OpInfo info_of() {
  return {Op::name,
          Op::linearity,
          Op::positively_homogeneous,
          Op::scales_with_parameters,
          Op::distribution,
          Op::file_form(),
          &Op::set_defaults,
          &Op::finish,
          &Op::check_parameters,
          &Op::template from_graph<float>,
          &Op::template from_graph<double>};
}

template <class... Ops>
void add_family(OpList<Ops...>, std::vector<OpInfo>& table) {
  (table.push_back(info_of<Ops>()), ...);
}

}  // namespace

const std::vector<OpInfo>& registry() {
  static const std::vector<OpInfo> table = [] {
    std::vector<OpInfo> t;
    add_family(ElementwiseOps{}, t);
    add_family(LinalgOps{}, t);
    add_family(ReduceOps{}, t);
    add_family(ShapeOps{}, t);
    add_family(SoftmaxOps{}, t);
    add_family(ConvOps{}, t);
    add_family(PoolOps{}, t);
    add_family(NormOps{}, t);
    return t;
  }();
  return table;
}

const OpInfo* find_op(const std::string& name) {
  for (const OpInfo& op : registry())
    if (name == op.name) return &op;
  return nullptr;
}

const OpInfo* find_file_op(const std::string& name) {
  const OpInfo* op = find_op(name);
  return op && op->file.in_file ? op : nullptr;
}

std::string file_op_names() {
  std::string names;
  for (const OpInfo& op : registry())
    if (op.file.in_file) names += (names.empty() ? "" : ", ") + std::string(op.name);
  return names;
}

}  // namespace ax::ops
