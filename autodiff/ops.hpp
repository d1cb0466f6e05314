// The ops a user records on a tape: each call appends one node and computes its value. Each
// family file holds its ops' structs (forward, backward and tangent side by side: the op's one
// descriptor) and, below them, the functions that record them:
//
//   ops/elementwise.hpp  a + b, a - b, a * b, a / b; affine (neg, scale, shift, and the operators
//                        with a number); exp, log and the activations (sigmoid, tanh, relu, ...)
//   ops/linalg.hpp       matmul(a[..., K], b[K, N]); linear(x[..., I], w[O, I], bias[O])
//   ops/reduce.hpp       sum, mean: of everything, or along an axis
//   ops/shape.hpp        reshape (the per-sample shape), flatten, concat
//   ops/softmax.hpp      softmax, log_softmax along an axis
//   ops/conv.hpp         conv2d, as PyTorch's, on [N, C, H, W]
//   ops/pool.hpp         maxpool2d, avgpool2d, adaptive_avgpool2d
//   ops/norm.hpp         batchnorm2d (eval mode), normalize (per-channel constants)
//
// The leading dimension of every tensor is the batch. Elementwise binary ops need equal shapes
// (no broadcasting); linear broadcasts its bias over the rows, and that is the only broadcasting
// there is. Axes may be negative (-1 is the last). Shapes that do not fit throw ax::Error naming
// the op and the shapes. ops/registry.hpp lists every op for the code that asks about ops by name
// (the model file, exact IG, the axiom checks).
#pragma once

#include "ops/conv.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"
#include "ops/norm.hpp"
#include "ops/pool.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"
