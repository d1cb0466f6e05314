// What convolution and pooling share: NCHW inputs and the checks of a 2-D window's attributes,
// which fail naming the node and the values (PyTorch's own constraints).
#pragma once

#include "common.hpp"

#include <string>

namespace ax::ops {

// "[2, 1]"
inline std::string pair_string(const Pair2d& p) { return "[" + std::to_string(p.h) + ", " + std::to_string(p.w) + "]"; }

// x must be [N, C, H, W].
template <class T>
void require_nchw(const OpContext<T>& c) {
  if (c.x(0).dimension() != 4) c.fail("expected an input [N, C, H, W], got " + to_string(c.x(0).shape()));
}

template <class T>
void require_positive(const OpContext<T>& c, const char* what, const Pair2d& p) {
  if (p.h < 1 || p.w < 1) c.fail(std::string(what) + " " + pair_string(p) + " must be positive");
}

template <class T>
void require_non_negative(const OpContext<T>& c, const char* what, const Pair2d& p) {
  if (p.h < 0 || p.w < 0) c.fail(std::string(what) + " " + pair_string(p) + " must not be negative");
}

}  // namespace ax::ops
