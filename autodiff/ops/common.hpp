// What every op family shares: shape checks that fail with the op's name and node.
#pragma once

#include "../kernels/elementwise.hpp"
#include "../tape.hpp"

namespace ax::ops {

// The shape of input 0, for ops that keep it.
template <class T>
Shape same_shape(const OpContext<T>& c) {
  return c.x(0).shape();
}

// All inputs must have one shape: elementwise ops do not broadcast.
template <class T>
Shape equal_shapes(const OpContext<T>& c) {
  for (int i = 1; i < c.arity(); ++i)
    if (c.x(i).shape() != c.x(0).shape())
      c.fail("input shapes " + to_string(c.x(0).shape()) + " and " + to_string(c.x(i).shape()) +
             " differ (elementwise ops do not broadcast)");
  return c.x(0).shape();
}

}  // namespace ax::ops
