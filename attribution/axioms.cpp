#include "axioms.hpp"

#include "../autodiff/ops/registry.hpp"
#include "../nn/model_file.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ax::attr {
namespace {

// The default tolerance of the relative errors: rounding level for exact IG, else what a
// well-converged quadrature reaches.
template <class T>
double default_tolerance(const CheckRequest& r) {
  const bool f64 = std::is_same_v<T, double>;
  if (r.tolerance >= 0) return r.tolerance;
  if (r.ig.rule == Rule::exact) return f64 ? 1e-9 : 1e-3;
  return f64 ? 1e-6 : 1e-3;
}

template <class T>
double max_abs(const Tensor<T>& t) {
  double m = 0;
  for (T v : t) m = std::max(m, std::abs(double(v)));
  return m;
}

// max |a - b| / max(|a|), over all values
template <class T>
double relative_difference(const Tensor<T>& a, const Tensor<T>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a.data()[i]) - double(b.data()[i])));
  const double scale = max_abs(a);
  return scale > 0 ? d / scale : d;
}

template <class T>
Attribution<T> run_ig(const nn::ModelSpec& model, const TargetSpec& target, const CheckRequest& r, const Tensor<T>& x,
                      const Tensor<T>& baseline) {
  Engine<T> f(model, target, r.engine);
  return integrated_gradients(f, x, baseline, r.ig);
}

AxiomCheck verdict(std::string axiom, double error, double tolerance, std::string detail) {
  AxiomCheck c;
  c.axiom = std::move(axiom);
  c.error = error;
  c.tolerance = tolerance;
  c.passed = error <= tolerance;
  c.detail = std::move(detail);
  return c;
}

AxiomCheck not_applicable(std::string axiom, std::string why) {
  AxiomCheck c;
  c.axiom = std::move(axiom);
  c.applicable = false;
  c.passed = true;
  c.detail = std::move(why);
  return c;
}

// The position of column `column` (last-dimension index) at flat index i.
std::size_t column_of(std::size_t i, std::size_t width) { return i % width; }

}  // namespace

nn::ModelSpec prepend_linear(const nn::ModelSpec& model, const std::vector<double>& weight) {
  nn::ModelSpec out = model;
  const std::string input = model.graph.input.name;
  const std::size_t width = model.graph.input.shape.back();
  if (weight.size() != width * width) throw Error("prepend_linear: weight needs " + std::to_string(width * width) + " values");
  nn::NodeSpec first = nn::make_node("axiomatic.check.first", "linear", {input});
  for (nn::NodeSpec& n : out.graph.nodes)
    for (std::string& in : n.inputs)
      if (in == input) in = first.name;
  if (out.graph.output == input) out.graph.output = first.name;
  out.graph.nodes.insert(out.graph.nodes.begin(), first);
  out.tensors[first.name + ".weight"] = nn::TensorData{"F64", {width, width}, weight};
  return out;
}

nn::ModelSpec append_linear(const nn::ModelSpec& model, const std::vector<double>& weight) {
  nn::ModelSpec out = model;
  nn::NodeSpec flat = nn::make_node("axiomatic.check.flat", "flatten", {model.graph.output});
  nn::NodeSpec last = nn::make_node("axiomatic.check.combination", "linear", {flat.name});
  out.graph.nodes.push_back(flat);
  out.graph.nodes.push_back(last);
  out.graph.output = last.name;
  out.graph.labels.clear();
  out.tensors[last.name + ".weight"] = nn::TensorData{"F64", {1, weight.size()}, weight};
  return out;
}

bool rescale_hidden(const nn::ModelSpec& model, double c, nn::ModelSpec& out) {
  const auto& nodes = model.graph.nodes;
  auto consumers = [&](const std::string& name) {
    std::vector<std::size_t> found;
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (std::count(nodes[i].inputs.begin(), nodes[i].inputs.end(), name)) found.push_back(i);
    return found;
  };
  // As each op's descriptor says: scaling a parametric layer's weight and bias by c scales its
  // output by c, and a positively homogeneous op passes the factor on.
  auto parametric = [](const nn::NodeSpec& n) {
    const ops::OpInfo* op = ops::find_file_op(n.op);
    return op && op->scales_with_parameters;
  };
  auto homogeneous = [](const nn::NodeSpec& n) {
    const ops::OpInfo* op = ops::find_file_op(n.op);
    return op && op->positively_homogeneous && n.inputs.size() == 1;
  };
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!parametric(nodes[i]) || nodes[i].name == model.graph.output) continue;
    // walk the single chain of positively homogeneous ops to the next parametric layer
    std::string at = nodes[i].name;
    for (;;) {
      const std::vector<std::size_t> next = consumers(at);
      if (next.size() != 1 || at == model.graph.output) break;
      const nn::NodeSpec& n = nodes[next[0]];
      if (parametric(n)) {
        out = model;
        for (const char* p : {".weight", ".bias"}) {
          const auto t = out.tensors.find(nodes[i].name + p);
          if (t != out.tensors.end())
            for (double& v : nn::own_values(t->second)) v *= c;
        }
        for (double& v : nn::own_values(out.tensors.at(n.name + ".weight"))) v /= c;
        return true;
      }
      if (!homogeneous(n)) break;
      at = n.name;
    }
  }
  return false;
}

namespace {

// What every check starts from: the model, input and baseline, the request, and IG on the model
// itself (phi), against which the variants are compared.
template <class T>
struct Checked {
  const nn::ModelSpec& model;
  const Tensor<T>& x;
  const Tensor<T>& baseline;
  const CheckRequest& request;
  double tolerance;
  Engine<T>& f;
  TargetSpec target;  // the request's, with the class resolved at x
  Attribution<T> phi;
  std::size_t size, width;  // the input's values, and its last dimension
};

template <class T>
AxiomCheck completeness(const Checked<T>& c) {
  return verdict("completeness", c.phi.relative_delta, c.tolerance,
                 "|sum - (F(x) - F(x'))| / |F(x) - F(x')|, sum " + std::to_string(c.phi.sum) + ", F(x) - F(x') " +
                     std::to_string(c.phi.f_input - c.phi.f_baseline));
}

// A baseline differing from x in the one feature that moves F the most alone: that feature gets
// F(x) - F(x'), and not 0.
template <class T>
AxiomCheck sensitivity(const Checked<T>& c) {
  std::vector<std::size_t> order(c.size);
  for (std::size_t i = 0; i < c.size; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::abs(double(c.phi.values.data()[a])) > std::abs(double(c.phi.values.data()[b]));
  });
  for (std::size_t tries = 0; tries < std::min<std::size_t>(c.size, 8); ++tries) {
    const std::size_t i = order[tries];
    Tensor<T> near = c.x;
    near.data()[i] = c.baseline.data()[i];
    const Attribution<T> one = integrated_gradients(c.f, c.x, near, c.request.ig);
    const double change = one.f_input - one.f_baseline;
    if (change == 0) continue;
    const double credit = double(one.values.data()[i]);
    AxiomCheck check = verdict("sensitivity", std::abs(credit - change) / std::abs(change), c.tolerance,
                               "x' = x but feature " + std::to_string(i) + ": its attribution " + std::to_string(credit) +
                                   " vs F(x) - F(x') " + std::to_string(change) + (credit != 0 ? ", not zero" : ", ZERO"));
    check.passed = check.passed && credit != 0;
    return check;
  }
  return not_applicable("sensitivity", "no single feature changes F");
}

// Mask the column with the largest attributions; the network then ignores it, and its features
// must get exactly 0.
template <class T>
AxiomCheck dummy(const Checked<T>& c) {
  if (c.width < 2) return not_applicable("dummy", "the input's last dimension has one value");
  std::vector<double> column_mass(c.width, 0.0);
  for (std::size_t i = 0; i < c.size; ++i) column_mass[column_of(i, c.width)] += std::abs(double(c.phi.values.data()[i]));
  const std::size_t masked =
      static_cast<std::size_t>(std::max_element(column_mass.begin(), column_mass.end()) - column_mass.begin());
  std::vector<double> mask(c.width * c.width, 0.0);
  for (std::size_t j = 0; j < c.width; ++j)
    if (j != masked) mask[j * c.width + j] = 1.0;
  const Attribution<T> d = run_ig(prepend_linear(c.model, mask), c.target, c.request, c.x, c.baseline);
  double largest = 0;
  for (std::size_t i = 0; i < c.size; ++i)
    if (column_of(i, c.width) == masked) largest = std::max(largest, std::abs(double(d.values.data()[i])));
  return verdict("dummy", largest, 0.0,
                 "largest |attribution| of the " + std::to_string(c.size / c.width) + " features in masked column " +
                     std::to_string(masked) + " (must be exactly 0)");
}

// A functionally equivalent twin (given, or made by rescaling two hidden layers): equal attributions.
template <class T>
AxiomCheck implementation_invariance(const Checked<T>& c) {
  nn::ModelSpec twin;
  std::string how;
  if (c.request.equivalent) {
    twin = *c.request.equivalent;
    how = "the given equivalent model";
  } else if (rescale_hidden(c.model, 2.0, twin)) {
    how = "a twin with one hidden layer scaled by 2 and the next by 1/2";
  } else {
    return not_applicable("implementation invariance", "no hidden layer pair to rescale; give --equivalent FILE");
  }
  const Attribution<T> t = run_ig(twin, c.target, c.request, c.x, c.baseline);
  return verdict("implementation invariance", relative_difference(c.phi.values, t.values), c.tolerance,
                 "max |phi - phi_twin| / max |phi| against " + how);
}

// F = a z_k + b z_j, appended as a linear node: attributions a phi_k + b phi_j.
template <class T>
AxiomCheck linearity(const Checked<T>& c) {
  const TargetSpec& asked = c.request.target;
  if (c.f.classes() < 2 || asked.output != Output::logit || asked.minus_class >= 0 || !asked.node.empty())
    return not_applicable("linearity", "needs a logit target on an output of two or more values");
  const std::size_t k = static_cast<std::size_t>(c.target.class_index), j = (k + 1) % c.f.classes();
  const double a = 0.75, b = -1.5;
  std::vector<double> w(c.f.classes(), 0.0);
  w[k] = a;
  w[j] = b;
  TargetSpec combined;
  combined.class_index = 0;
  const Attribution<T> both = run_ig(append_linear(c.model, w), combined, c.request, c.x, c.baseline);
  TargetSpec second = c.target;
  second.class_index = static_cast<int>(j);
  const Attribution<T> phi_j = run_ig(c.model, second, c.request, c.x, c.baseline);
  Tensor<T> expected(c.x.shape());
  for (std::size_t i = 0; i < c.size; ++i)
    expected.data()[i] = T(a * double(c.phi.values.data()[i]) + b * double(phi_j.values.data()[i]));
  const std::string zk = "z_" + std::to_string(k), zj = "z_" + std::to_string(j);
  return verdict("linearity", relative_difference(expected, both.values), c.tolerance,
                 "F = 0.75 " + zk + " - 1.5 " + zj + ": max |phi_F - (0.75 phi_" + std::to_string(k) + " - 1.5 phi_" +
                     std::to_string(j) + ")| / max |.|");
}

// Columns c1, c2 averaged first, so F is symmetric in them; from an input and baseline symmetric in
// them, they get equal attributions.
template <class T>
AxiomCheck symmetry_preservation(const Checked<T>& c) {
  if (c.width < 2) return not_applicable("symmetry preservation", "the input's last dimension has one value");
  const std::size_t c1 = 0, c2 = c.width - 1;
  std::vector<double> average(c.width * c.width, 0.0);
  for (std::size_t j = 0; j < c.width; ++j) average[j * c.width + j] = 1.0;
  for (std::size_t row : {c1, c2}) {
    average[row * c.width + row] = 0.0;
    average[row * c.width + c1] = average[row * c.width + c2] = 0.5;
  }
  Tensor<T> xs = c.x, bs = c.baseline;
  for (std::size_t i = 0; i < c.size; i += c.width) {
    xs.data()[i + c2] = xs.data()[i + c1];
    bs.data()[i + c2] = bs.data()[i + c1];
  }
  const Attribution<T> s = run_ig(prepend_linear(c.model, average), c.target, c.request, xs, bs);
  double difference = 0;
  for (std::size_t i = 0; i < c.size; i += c.width)
    difference = std::max(difference, std::abs(double(s.values.data()[i + c1]) - double(s.values.data()[i + c2])));
  const double scale = max_abs(s.values);
  return verdict("symmetry preservation", scale > 0 ? difference / scale : difference, c.tolerance,
                 "F symmetric in columns " + std::to_string(c1) + " and " + std::to_string(c2) +
                     ": max |phi_c1 - phi_c2| / max |phi|");
}

}  // namespace

template <class T>
std::vector<AxiomCheck> check_axioms(const nn::ModelSpec& model, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const CheckRequest& request) {
  Engine<T> f(model, request.target, request.engine);
  TargetSpec target = request.target;
  target.class_index = f.resolve_class(x);
  const Attribution<T> phi = integrated_gradients(f, x, baseline, request.ig);
  const Checked<T> c{model, x, baseline, request, default_tolerance<T>(request), f, target, phi, x.size(), x.shape().back()};
  return {completeness(c), sensitivity(c), dummy(c), implementation_invariance(c), linearity(c),
          symmetry_preservation(c)};
}

template std::vector<AxiomCheck> check_axioms(const nn::ModelSpec&, const Tensor<float>&, const Tensor<float>&, const CheckRequest&);
template std::vector<AxiomCheck> check_axioms(const nn::ModelSpec&, const Tensor<double>&, const Tensor<double>&, const CheckRequest&);

}  // namespace ax::attr
