// The exact path of a piecewise-linear network: where along g(a) = x' + a (x - x') every relu,
// leaky_relu and max-pool switches, so that IG can be summed exactly, one gradient per linear
// piece (docs/design.md, "The exact path").
//
// Kink nodes are taken in tape order. When a node's turn comes, the breakpoints found so far
// hold every switch of the nodes before it, so between two consecutive breakpoints the node's
// input is affine in a: its values at the breakpoints give every sign change of a relu input
// and every change of a pool window's maximum (the upper envelope of affine lines) in closed
// form. The switches found are added, and the next node follows. At the end, the gradient is
// constant inside each piece.
//
// The search does not run the whole network at every breakpoint. Every node before the j-th
// kink node is affine between two breakpoints of the first j - 1 kink nodes, so the values the
// nodes from the j-th kink on read from before it (its "frontier", e.g. a convolution's output)
// are kept at those breakpoints and interpolated at any later point: a later node's input, and
// the final forward pass at each piece, only run the segments between kink nodes (relu, pool)
// and never again the convolutions and linear layers whose outputs are kept. The path is
// walked in stretches ("windows") small enough for the kept values to fit half the engine's
// memory budget; the tape's batches take the other half.
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
  // prob, logprob: the parts (of at most 64 + 32 Gauss-Legendre nodes each) one piece's softmax
  // integral may take before it ends with an error; the integral is never left short of rounding
  std::size_t max_parts_per_piece = 256;
};

// Whether the streaming search (path_breakpoints, exact_path) applies: a chain network, every op
// node having at most one input that moves along the path. Networks with skip connections or
// concatenations of path-dependent branches use the reference search and one gradient per piece.
template <class T>
bool exact_search_applies(Engine<T>& f);

// The sorted breakpoints 0 = b_0 < b_1 < ... < b_P = 1 of the path's linear pieces. Throws
// NotPiecewiseLinear when a node the target depends on is not piecewise linear, Error as soon as
// the pieces found exceed the cap, TimeLimitExceeded past the engine's deadline.
template <class T>
std::vector<double> path_breakpoints(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const ExactOptions& options = {});

// The same breakpoints (to rounding) found the simple way, kept as the reference the tests
// compare the search with: each kink node's input at every breakpoint by a forward pass of the
// whole network up to it.
template <class T>
std::vector<double> path_breakpoints_reference(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                               const ExactOptions& options = {});

// Exact IG's integral, piece by piece: for each piece [b_p, b_p+1] the integral of dF/dx over
// it, summed. Inside a piece dF/dx = sum_c dF/dz_c (a) J_c with the logits' Jacobian J constant,
// so one backward pass from the logits per piece, seeded with the integral of dF/dz over the
// piece, is exact: for a logit target the seed is the piece's width; for prob and logprob the
// integral of the softmax's derivative along the piece's (affine) logits, to rounding, by
// Gauss-Legendre rules of rising order (4 to 64 nodes), each checked against the one before,
// halving the piece where 64 nodes do not suffice (ExactOptions::max_parts_per_piece parts at
// most); these cost softmax evaluations on the logits, never passes through the network.
template <class T>
struct ExactPath {
  Tensor<T> gradient;          // sum over the pieces of the integral of dF/dx (the input's shape)
  std::size_t pieces = 0;
  std::size_t windows = 0;     // stretches of the path searched one after another (the memory budget)
  std::size_t seed_nodes = 0;  // prob, logprob: softmax evaluations of the adaptive seed integrals
  std::size_t most_parts = 0;  // prob, logprob: the most parts one piece's seed integral took
  // per piece: its midpoint, F there, and the piece's share of the attributions' sum
  std::vector<double> alphas, f, weighted_dot;
};

template <class T>
ExactPath<T> exact_path(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                        const ExactOptions& options = {});

// A quadrature over those pieces, for callers that need path points (conductance): for a
// logit (or logit difference) target, the midpoint of each piece weighted by its width; for
// prob and logprob, the nodes the adaptive rule above settles on for each piece (the logits at
// the breakpoints by one forward pass each): 4 Gauss-Legendre nodes where 4 and 8 agree to
// rounding, more where the softmax curves, so these are exact to rounding too.
// `pieces` receives the piece count.
template <class T>
Quadrature exact_quadrature(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                            const ExactOptions& options, std::size_t& pieces);

}  // namespace ax::attr
