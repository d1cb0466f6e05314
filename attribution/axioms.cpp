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
  TargetFunction<T> f(model, target, r.engine);
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
            for (double& v : t->second.values) v *= c;
        }
        for (double& v : out.tensors.at(n.name + ".weight").values) v /= c;
        return true;
      }
      if (!homogeneous(n)) break;
      at = n.name;
    }
  }
  return false;
}

template <class T>
std::vector<AxiomCheck> check_axioms(const nn::ModelSpec& model, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const CheckRequest& request) {
  const double tolerance = default_tolerance<T>(request);
  std::vector<AxiomCheck> checks;
  TargetFunction<T> f(model, request.target, request.engine);
  TargetSpec target = request.target;
  target.class_index = f.resolve_class(x);
  const Attribution<T> phi = integrated_gradients(f, x, baseline, request.ig);
  const std::size_t size = x.size(), width = x.shape().back();

  // completeness
  checks.push_back(verdict("completeness", phi.relative_delta, tolerance,
                           "|sum - (F(x) - F(x'))| / |F(x) - F(x')|, sum " + std::to_string(phi.sum) + ", F(x) - F(x') " +
                               std::to_string(phi.f_input - phi.f_baseline)));

  // sensitivity: a baseline differing from x in the one feature that moves F the most alone
  {
    std::vector<std::size_t> order(size);
    for (std::size_t i = 0; i < size; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return std::abs(double(phi.values.data()[a])) > std::abs(double(phi.values.data()[b]));
    });
    AxiomCheck c = not_applicable("sensitivity", "no single feature changes F");
    for (std::size_t tries = 0; tries < std::min<std::size_t>(size, 8); ++tries) {
      const std::size_t i = order[tries];
      Tensor<T> near = x;
      near.data()[i] = baseline.data()[i];
      const Attribution<T> one = integrated_gradients(f, x, near, request.ig);
      const double change = one.f_input - one.f_baseline;
      if (change == 0) continue;
      c = verdict("sensitivity", std::abs(double(one.values.data()[i]) - change) / std::abs(change), tolerance,
                  "x' = x but feature " + std::to_string(i) + ": its attribution " + std::to_string(double(one.values.data()[i])) +
                      " vs F(x) - F(x') " + std::to_string(change) + (one.values.data()[i] != T(0) ? ", not zero" : ", ZERO"));
      c.passed = c.passed && one.values.data()[i] != T(0);
      break;
    }
    checks.push_back(c);
  }

  // dummy: mask the column with the largest attributions; the network then ignores it
  if (width >= 2) {
    std::vector<double> column_mass(width, 0.0);
    for (std::size_t i = 0; i < size; ++i) column_mass[column_of(i, width)] += std::abs(double(phi.values.data()[i]));
    const std::size_t masked = static_cast<std::size_t>(std::max_element(column_mass.begin(), column_mass.end()) - column_mass.begin());
    std::vector<double> mask(width * width, 0.0);
    for (std::size_t j = 0; j < width; ++j)
      if (j != masked) mask[j * width + j] = 1.0;
    const Attribution<T> d = run_ig(prepend_linear(model, mask), target, request, x, baseline);
    double largest = 0;
    for (std::size_t i = 0; i < size; ++i)
      if (column_of(i, width) == masked) largest = std::max(largest, std::abs(double(d.values.data()[i])));
    checks.push_back(verdict("dummy", largest, 0.0,
                             "largest |attribution| of the " + std::to_string(size / width) + " features in masked column " +
                                 std::to_string(masked) + " (must be exactly 0)"));
  } else {
    checks.push_back(not_applicable("dummy", "the input's last dimension has one value"));
  }

  // implementation invariance
  {
    nn::ModelSpec twin;
    std::string how;
    if (request.equivalent) {
      twin = *request.equivalent;
      how = "the given equivalent model";
    } else if (rescale_hidden(model, 2.0, twin)) {
      how = "a twin with one hidden layer scaled by 2 and the next by 1/2";
    }
    if (how.empty()) {
      checks.push_back(not_applicable("implementation invariance", "no hidden layer pair to rescale; give --equivalent FILE"));
    } else {
      const Attribution<T> t = run_ig(twin, target, request, x, baseline);
      checks.push_back(verdict("implementation invariance", relative_difference(phi.values, t.values), tolerance,
                               "max |phi - phi_twin| / max |phi| against " + how));
    }
  }

  // linearity: F = a z_k + b z_j against a phi_k + b phi_j
  if (f.classes() >= 2 && request.target.output == Output::logit && request.target.minus_class < 0 && request.target.node.empty()) {
    const std::size_t k = static_cast<std::size_t>(target.class_index), j = (k + 1) % f.classes();
    const double a = 0.75, b = -1.5;
    std::vector<double> w(f.classes(), 0.0);
    w[k] = a;
    w[j] = b;
    TargetSpec combined;
    combined.class_index = 0;
    const Attribution<T> both = run_ig(append_linear(model, w), combined, request, x, baseline);
    TargetSpec second = target;
    second.class_index = static_cast<int>(j);
    const Attribution<T> phi_j = run_ig(model, second, request, x, baseline);
    Tensor<T> expected(x.shape());
    for (std::size_t i = 0; i < size; ++i)
      expected.data()[i] = T(a * double(phi.values.data()[i]) + b * double(phi_j.values.data()[i]));
    checks.push_back(verdict("linearity", relative_difference(expected, both.values), tolerance,
                             "F = 0.75 z_" + std::to_string(k) + " - 1.5 z_" + std::to_string(j) +
                                 ": max |phi_F - (0.75 phi_" + std::to_string(k) + " - 1.5 phi_" + std::to_string(j) + ")| / max |.|"));
  } else {
    checks.push_back(not_applicable("linearity", "needs a logit target on an output of two or more values"));
  }

  // symmetry preservation: columns c1, c2 averaged first; input and baseline symmetric in them
  if (width >= 2) {
    const std::size_t c1 = 0, c2 = width - 1;
    std::vector<double> average(width * width, 0.0);
    for (std::size_t j = 0; j < width; ++j) average[j * width + j] = 1.0;
    for (std::size_t row : {c1, c2}) {
      average[row * width + row] = 0.0;
      average[row * width + c1] = average[row * width + c2] = 0.5;
    }
    Tensor<T> xs = x, bs = baseline;
    for (std::size_t i = 0; i < size; i += width) {
      xs.data()[i + c2] = xs.data()[i + c1];
      bs.data()[i + c2] = bs.data()[i + c1];
    }
    const Attribution<T> s = run_ig(prepend_linear(model, average), target, request, xs, bs);
    double difference = 0;
    for (std::size_t i = 0; i < size; i += width)
      difference = std::max(difference, std::abs(double(s.values.data()[i + c1]) - double(s.values.data()[i + c2])));
    const double scale = max_abs(s.values);
    checks.push_back(verdict("symmetry preservation", scale > 0 ? difference / scale : difference, tolerance,
                             "F symmetric in columns " + std::to_string(c1) + " and " + std::to_string(c2) +
                                 ": max |phi_c1 - phi_c2| / max |phi|"));
  } else {
    checks.push_back(not_applicable("symmetry preservation", "the input's last dimension has one value"));
  }
  return checks;
}

template std::vector<AxiomCheck> check_axioms(const nn::ModelSpec&, const Tensor<float>&, const Tensor<float>&, const CheckRequest&);
template std::vector<AxiomCheck> check_axioms(const nn::ModelSpec&, const Tensor<double>&, const Tensor<double>&, const CheckRequest&);

}  // namespace ax::attr
