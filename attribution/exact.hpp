// The exact path of a piecewise-linear network: where along g(a) = x' + a (x - x') every relu,
// leaky_relu and max-pool switches, so that IG can be summed exactly, one gradient per linear
// piece (docs/design.md, "The exact path").
//
// Kink nodes are taken in tape order. When a node's turn comes, the breakpoints found so far
// hold every switch of the nodes before it, so between two consecutive breakpoints the node's
// input is affine in a: its values at the breakpoints (one batched forward pass, streamed in
// chunks) give every sign change of a relu input and every change of a pool window's maximum
// (the upper envelope of affine lines) in closed form. The switches found are added, and the
// next node follows. At the end, the gradient is constant inside each piece.
#pragma once

#include "path.hpp"
#include "target.hpp"

namespace ax::attr {

// Exact IG's refusal of a network that is not piecewise linear up to the target (a smooth op on
// the way): a quadrature rule is the way out. More pieces than the cap is a plain Error.
struct NotPiecewiseLinear : Error {
  using Error::Error;
};

struct ExactOptions {
  std::size_t max_pieces = 1000000;  // more pieces end with an error, never an approximation
  std::size_t gl_per_piece = 4;      // prob and logprob targets: Gauss-Legendre nodes per piece
};

// The sorted breakpoints 0 = b_0 < b_1 < ... < b_P = 1 of the path's linear pieces. Throws
// NotPiecewiseLinear when a node the target depends on is not piecewise linear, Error when the
// pieces exceed the cap, TimeLimitExceeded past the engine's deadline.
template <class T>
std::vector<double> path_breakpoints(TargetFunction<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const ExactOptions& options = {});

// The quadrature that integrates exactly over those pieces: for a logit (or logit difference)
// target, the midpoint of each piece weighted by its width (the gradient is constant there);
// for prob and logprob, Gauss-Legendre inside each piece. `pieces` receives the piece count.
template <class T>
Quadrature exact_quadrature(TargetFunction<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                            const ExactOptions& options, std::size_t& pieces);

}  // namespace ax::attr
