// Finite-difference checks of a recorded function, in float64.
//
// For a function f built on a tape from some inputs, with a random output weighting u and a
// random input direction v:
//   backward   J^T u from backward() against central differences of <u, f(x)>, element by element;
//   tangent    J v from tangent() against (f(x + h v) - f(x - h v)) / 2h;
//   dot        <v, J^T u> against <J v, u>: ties the two passes together to rounding level.
// Errors are relative: |analytic - numeric| / max(1, |numeric|), the largest over elements.
#pragma once

#include "tape.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ax {

struct GradcheckOptions {
  double step = 1e-6;       // h of the central differences
  std::uint64_t seed = 1;   // draws u and v
};

struct GradcheckReport {
  double backward_error = 0;  // largest relative error of J^T u
  double tangent_error = 0;   // largest relative error of J v
  double dot_error = 0;       // |<v, J^T u> - <J v, u>| / max(1, |<J v, u>|)
  std::size_t checked = 0;    // number of input elements perturbed
  std::string summary() const;
};

using GradcheckFunction = std::function<Var<double>(Tape<double>&, const std::vector<Var<double>>&)>;

// Records f on a fresh tape with every input asking for a gradient, then checks it.
GradcheckReport gradcheck(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace ax
