// The attribution axioms (Sundararajan et al., 2017), checked on a real model and input. Where an
// axiom needs a network with a known property, the check builds a variant of the model that has
// it, in the model's own graph language, so any model file can be checked:
//
//   completeness   sum of attributions = F(x) - F(x')
//   sensitivity    x' equal to x but in one feature, F(x) != F(x'): that feature gets F(x) - F(x')
//   dummy          a variant whose first node masks one column of the input (a linear node on the
//                  last dimension): the network ignores those features, which get exactly 0
//   implementation two functionally equivalent networks give equal attributions: a variant with
//   invariance     one hidden layer scaled by 2 and the next by 1/2 (relu and pools are positively
//                  homogeneous), or a second model file given by the user
//   linearity      F = a F1 + b F2, two outputs combined by a linear node appended to the graph:
//                  attributions are a phi1 + b phi2
//   symmetry       a variant whose first node averages two input columns: F is symmetric in
//                  them; from a symmetric input and baseline they get equal attributions
//
// Each check states its measured error and its tolerance and passes or fails.
#pragma once

#include "methods.hpp"

#include <string>
#include <vector>

namespace ax::attr {

struct AxiomCheck {
  std::string axiom;
  double error = 0;      // relative, as `detail` says
  double tolerance = 0;
  bool applicable = true;
  bool passed = false;
  std::string detail;
};

struct CheckRequest {
  TargetSpec target;
  IgOptions ig;                                  // the method checked: IG with this rule
  EngineOptions engine;
  const nn::ModelSpec* equivalent = nullptr;     // implementation invariance against this model
  double tolerance = -1;                         // < 0: the default for the precision and rule
};

// Runs every check for input x and baseline x' (both of the model's input shape).
template <class T>
std::vector<AxiomCheck> check_axioms(const nn::ModelSpec& model, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const CheckRequest& request);

// The model variants the checks use (exposed for tests and for reuse).
// A linear node on the input's last dimension, with weight [L, L], put first.
nn::ModelSpec prepend_linear(const nn::ModelSpec& model, const std::vector<double>& weight);
// A linear node with one output, weight [1, K], appended after the output: F = sum_k w_k z_k.
nn::ModelSpec append_linear(const nn::ModelSpec& model, const std::vector<double>& weight);
// The first parametric layer scaled by c and the next by 1/c, when only relu, pools, flatten or
// identity stand between them; false when the model has no such pair.
bool rescale_hidden(const nn::ModelSpec& model, double c, nn::ModelSpec& out);

}  // namespace ax::attr
