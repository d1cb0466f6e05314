// What every op shares: the descriptor's defaults, the table the tape calls through, recording a
// node, and shape checks that fail with the op's name and node.
//
// An op is one struct, its descriptor: its name, its shape rule and its forward, backward and
// tangent passes side by side, then what the rest of the code asks of it (how it bends, for exact
// IG; how it scales, for the axiom checks; its model-file form and how a file's node records it).
// Everything it does not say comes from OpBase. Each family file lists its ops at its end
// (OpList), and ops/registry.cpp gathers the lists: nothing else matches ops by name.
#pragma once

#include "../kernels/activation.hpp"
#include "../kernels/elementwise.hpp"
#include "../tape.hpp"
#include "schema.hpp"

#include <cstdio>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

namespace ax::ops {

// The defaults of a descriptor. An op states only what differs.
struct OpBase {
  static constexpr Linearity linearity = Linearity::smooth;
  static constexpr bool positively_homogeneous = false;  // one input, f(c x) = c f(x) for every c > 0
  static constexpr bool scales_with_parameters = false;  // weight and bias times c give y times c
  static constexpr Distribution distribution = Distribution::none;  // softmax: probabilities, ...
  static constexpr bool shape_only_first = false;        // reads input 0's batch size, not its values (constant)
  static constexpr bool writes_unset_gradients = false;  // backward honours OpContext::gx_unset (tape.hpp)
  static FileForm file_form() { return {}; }             // not a model-file op
  static void set_defaults(Attrs&) {}                    // a file's defaults where they differ from Attrs'
  static void finish(Attrs&, const AttributeNames&) {}   // checks across attributes; throws Error
  static void check_parameters(const FileParameters&) {} // checks of the file's parameters; throws Error
  template <class T>
  static void switches(const Attrs&, const Shape&, const Shape&, const T*, const T*, std::vector<double>&) {}
  template <class T>
  static Var<T> from_graph(GraphNode<T>& node) {
    node.fail("this op has no model-file form");
    return {};  // not reached: fail throws
  }
};

// The ops of one family file, in the order the registry lists them.
template <class... Ops>
struct OpList {};

// Whether Op states a DeepLIFT rescale rule (ops/rescale.hpp).
template <class Op, class T, class = void>
struct has_rescale : std::false_type {};
template <class Op, class T>
struct has_rescale<Op, T, std::void_t<decltype(&Op::template rescale<T>)>> : std::true_type {};

template <class Op, class T>
constexpr void (*rescale_of())(OpContext<T>&) {
  if constexpr (has_rescale<Op, T>::value) return &Op::template rescale<T>;
  else return nullptr;
}

// The table the tape calls an op through: one per op and scalar type, made on first use.
template <class Op, class T>
const OpFns<T>& op_fns() {
  static const OpFns<T> table{Op::name,
                              &Op::template shape<T>,
                              &Op::template forward<T>,
                              &Op::template backward<T>,
                              &Op::template tangent<T>,
                              Op::linearity,
                              Op::linearity == Linearity::piecewise_linear ? &Op::template switches<T> : nullptr,
                              rescale_of<Op, T>(),
                              Op::shape_only_first,
                              Op::writes_unset_gradients};
  return table;
}

template <class T>
Tape<T>& tape_of(const std::vector<Var<T>>& vars, const char* op) {
  if (vars.empty()) throw Error(std::string(op) + ": no inputs");
  Tape<T>* tape = vars.front().tape;
  for (const Var<T>& v : vars)
    if (!v.tape || v.tape != tape) throw Error(std::string(op) + ": inputs are not all on one tape");
  return *tape;
}

// Appends a node of op `Op` to the inputs' tape and computes its value.
template <class Op, class T>
Var<T> record(const std::vector<Var<T>>& inputs, Attrs attrs = {}) {
  Tape<T>& tape = tape_of(inputs, Op::name);
  std::vector<int> ids;
  for (const Var<T>& v : inputs) ids.push_back(v.id);
  return tape.record(op_fns<Op, T>(), std::move(ids), std::move(attrs));
}
template <class Op, class T>
Var<T> record(std::initializer_list<Var<T>> inputs, Attrs attrs = {}) {
  return record<Op>(std::vector<Var<T>>(inputs), std::move(attrs));
}

// For an op that writes unset gradients (writes_unset_gradients), on a route that only adds:
// gx(i) zero-filled first when it holds no value yet. Nullptr when input i takes no gradient.
template <class T>
Tensor<T>* gx_to_add(OpContext<T>& c, int i) {
  Tensor<T>* g = c.gx(i);
  if (g && c.gx_unset(i)) kernels::fill(g->data(), g->size(), T(0));
  return g;
}

// gx(i) = gy (unset) or gx(i) += gy: an input that passes the output's gradient on unchanged.
template <class T>
void pass_gradient(OpContext<T>& c, int i) {
  if (Tensor<T>* g = c.gx(i)) {
    if (c.gx_unset(i)) kernels::map(c.gy(), *g, [](T v) { return v; });
    else kernels::axpy(T(1), c.gy(), *g);
  }
}

// -1 is the last axis; an axis outside the rank is an error naming the op.
template <class T>
int resolve_axis(Var<T> x, std::int64_t axis, const char* op) {
  const std::int64_t rank = static_cast<std::int64_t>(x.tape->value(x).dimension());
  const std::int64_t resolved = axis < 0 ? axis + rank : axis;
  if (resolved < 0 || resolved >= rank)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " +
                x.tape->describe(x.id) + " of shape " + to_string(x.tape->value(x).shape()));
  return static_cast<int>(resolved);
}

// "1e-05", "0", "-0.5": a number as an error message shows it.
inline std::string number_string(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// The shape of input 0, for ops that keep it.
template <class T>
Shape same_shape(const OpContext<T>& c) {
  return c.x(0).shape();
}

// The shape of input 0, after `check(attrs)` (an op's check across attributes, which throws
// Error) passes; its failure is named with the node.
template <class T, class Check>
Shape same_shape_checked(const OpContext<T>& c, Check check) {
  try {
    check(c.attrs());
  } catch (const Error& e) {
    c.fail(e.what());
  }
  return same_shape(c);
}

}  // namespace ax::ops
