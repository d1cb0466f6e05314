// 2-D convolution, as torch.nn.functional.conv2d (kernels/conv.hpp has the definition).
#pragma once

#include "../kernels/conv.hpp"
#include "window.hpp"

#include <algorithm>

namespace ax::ops {

inline Attrs conv_attrs(Pair2d stride, Pair2d padding, Pair2d dilation, std::int64_t groups) {
  Attrs attrs;
  attrs.stride = stride;
  attrs.padding = padding;
  attrs.dilation = dilation;
  attrs.groups = groups;
  return attrs;
}

// y[N, O, OH, OW] = conv(x[N, C, H, W], weight[O, C/groups, KH, KW]) + bias[O]; the bias (input 2)
// is optional. attrs: stride, padding (zeros), dilation, groups.
// backward: gx and gweight by the transposed products, gbias = gy summed over samples and pixels,
// each only when its input asks (an attribution asks for gx alone).
// tangent:  ty = conv(tx, w) + conv(x, tw) + tbias (the op is bilinear in x and w).
struct Conv2d : OpBase {
  static constexpr const char* name = "conv2d";
  static constexpr Linearity linearity = Linearity::multilinear;  // bilinear in x and the weight
  static constexpr bool scales_with_parameters = true;
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() {
    return file_op({{"stride", &Attrs::stride, Allowed::positive, false, true},
                    {"padding", &Attrs::padding, Allowed::non_negative},
                    {"dilation", &Attrs::dilation, Allowed::positive},
                    {"groups", &Attrs::groups, Allowed::positive}},
                   {{"weight", true}, {"bias", false}});
  }
  static void check_parameters(const FileParameters& p) {
    const std::vector<std::size_t>& w = p.shape("weight");
    if (w.size() != 4)
      throw Error("parameter " + p.quoted("weight") + " has shape " + dims_string(w) +
                  "; expected rank 4, [O, I/groups, KH, KW]");
    if (std::find(w.begin(), w.end(), 0) != w.end())
      throw Error("parameter " + p.quoted("weight") + " has shape " + dims_string(w) +
                  "; a conv2d weight has no zero dimension");
    const std::int64_t groups = p.attrs->groups;
    if (w[0] % static_cast<std::size_t>(groups) != 0)
      throw Error("groups " + std::to_string(groups) + " does not divide the " + std::to_string(w[0]) +
                  " output channels of " + p.quoted("weight") + " " + dims_string(w));
    check_bias_fits_weight(p);
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    node.require_rank(4, name, "[N, C, H, W]");
    const Shape& x = node.input_shape();
    const std::int64_t groups = node.attrs().groups;
    if (groups < 1 || x[1] % static_cast<std::size_t>(groups) != 0)
      node.fail("groups " + std::to_string(groups) + " does not divide the input's " + std::to_string(x[1]) +
                " channels");
    std::vector<Var<T>> inputs{node.input(), node.parameter("weight", {0, x[1] / static_cast<std::size_t>(groups), 0, 0})};
    if (node.has("bias")) inputs.push_back(node.parameter("bias", {inputs[1].tape->value(inputs[1]).shape()[0]}));
    return record<Conv2d>(inputs, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    const Shape& w = c.x(1).shape();
    const Attrs& a = c.attrs();
    if (x.size() != 4 || w.size() != 4)
      c.fail("expected an input [N, C, H, W] and a weight [O, C/groups, KH, KW], got " + to_string(x) + " and " +
             to_string(w));
    require_positive(c, "stride", a.stride);
    require_non_negative(c, "padding", a.padding);
    require_positive(c, "dilation", a.dilation);
    const std::size_t groups = a.groups < 1 ? 0 : std::size_t(a.groups);
    if (groups == 0 || x[1] % groups != 0 || w[0] % groups != 0)
      c.fail("groups " + std::to_string(a.groups) + " must divide the input channels (" + std::to_string(x[1]) +
             ") and the output channels (" + std::to_string(w[0]) + ")");
    if (w[1] * groups != x[1] || x[1] == 0)
      c.fail("weight " + to_string(w) + " does not fit input " + to_string(x) + " with groups " +
             std::to_string(groups) + ": expected " + std::to_string(x[1] / groups) + " input channels per group");
    if (w[2] == 0 || w[3] == 0) c.fail("weight " + to_string(w) + " has an empty kernel");
    if (c.arity() == 3 && c.x(2).shape() != Shape{w[0]})
      c.fail("bias has shape " + to_string(c.x(2).shape()) + ", expected [" + std::to_string(w[0]) + "]");
    // The window's extent with dilation must fit in the padded input.
    const Pair2d extent(a.dilation.h * std::int64_t(w[2] - 1) + 1, a.dilation.w * std::int64_t(w[3] - 1) + 1);
    const Pair2d padded(std::int64_t(x[2]) + 2 * a.padding.h, std::int64_t(x[3]) + 2 * a.padding.w);
    if (extent.h > padded.h || extent.w > padded.w)
      c.fail("window " + pair_string(extent) + " (kernel [" + std::to_string(w[2]) + ", " + std::to_string(w[3]) +
             "], dilation " + pair_string(a.dilation) + ") is larger than the padded input " + pair_string(padded));
    const kernels::Conv2dShape s = geometry(c);
    return {x[0], w[0], s.out_h(), s.out_w()};
  }

  template <class T> static void forward(OpContext<T>& c) {
    const kernels::Conv2dShape s = geometry(c);
    kernels::conv2d_forward(s, c.x(0).data(), c.x(1).data(), bias(c), c.y().data(), false, columns(c, s));
  }

  template <class T> static void backward(OpContext<T>& c) {
    const kernels::Conv2dShape s = geometry(c);
    const T* gy = c.gy().data();
    if (Tensor<T>* g = c.gx(0))
      kernels::conv2d_backward_data(s, gy, c.x(1).data(), g->data(), !c.gx_unset(0), columns(c, s));
    if (Tensor<T>* g = gx_to_add(c, 1)) kernels::conv2d_backward_weights(s, c.x(0).data(), gy, g->data(), columns(c, s));
    if (c.arity() == 3)
      if (Tensor<T>* g = gx_to_add(c, 2)) kernels::conv2d_backward_bias(s, gy, g->data());
  }

  template <class T> static void tangent(OpContext<T>& c) {
    const kernels::Conv2dShape s = geometry(c);
    const Tensor<T>* tbias = c.arity() == 3 ? c.tx(2) : nullptr;
    const T* pending_bias = tbias ? tbias->data() : nullptr;  // added by the first product written
    bool written = false;
    if (const Tensor<T>* t = c.tx(0)) {  // ty = conv(tx, w) + tbias
      kernels::conv2d_forward(s, t->data(), c.x(1).data(), pending_bias, c.ty().data(), written, columns(c, s));
      written = true;
      pending_bias = nullptr;
    }
    if (const Tensor<T>* t = c.tx(1)) {  // ty += conv(x, tw) (+ tbias)
      kernels::conv2d_forward(s, c.x(0).data(), t->data(), pending_bias, c.ty().data(), written, columns(c, s));
      written = true;
    }
    if (!written) {  // only the bias moves: ty[n, o, :] = tbias[o]
      const std::size_t P = s.out_pixels();
      T* ty = c.ty().data();
      // [N, O, P]
      for (std::size_t n = 0; n < s.batch; ++n)
        for (std::size_t o = 0; o < s.out_channels; ++o)
          std::fill(ty + (n * s.out_channels + o) * P, ty + (n * s.out_channels + o + 1) * P, tbias->data()[o]);
    }
  }

 private:
  template <class T> static kernels::Conv2dShape geometry(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    const Shape& w = c.x(1).shape();
    const Attrs& a = c.attrs();
    kernels::Conv2dShape s;
    s.batch = x[0], s.in_channels = x[1], s.in_h = x[2], s.in_w = x[3];
    s.out_channels = w[0], s.kernel_h = w[2], s.kernel_w = w[3];
    s.stride_h = std::size_t(a.stride.h), s.stride_w = std::size_t(a.stride.w);
    s.pad_h = std::size_t(a.padding.h), s.pad_w = std::size_t(a.padding.w);
    s.dilation_h = std::size_t(a.dilation.h), s.dilation_w = std::size_t(a.dilation.w);
    s.groups = std::size_t(a.groups);
    s.chunk = kernels::conv2d_chunk(s, sizeof(T));
    return s;
  }

  template <class T> static const T* bias(const OpContext<T>& c) { return c.arity() == 3 ? c.x(2).data() : nullptr; }

  // The im2col columns: the tape's shared workspace, grown (never shrunk, so never refilled) to fit.
  template <class T> static T* columns(OpContext<T>& c, const kernels::Conv2dShape& s) {
    Tensor<T>& workspace = c.workspace();
    const std::size_t needed = kernels::conv2d_workspace(s);
    if (workspace.size() < needed) workspace.resize(Shape{needed});
    return workspace.data();
  }
};

using ConvOps = OpList<Conv2d>;

}  // namespace ax::ops

namespace ax {

// weight[O, C/groups, KH, KW], bias[O]; zero padding. groups == C == O is a depthwise convolution.
// Pairs are [h, w], and one number means both: conv2d(x, w, b, 2, 1) has stride 2, padding 1.
template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Pair2d stride = 1, Pair2d padding = 0, Pair2d dilation = 1,
                                 std::int64_t groups = 1) {
  return ops::record<ops::Conv2d>({x, weight}, ops::conv_attrs(stride, padding, dilation, groups));
}
template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Var<T> bias, Pair2d stride = 1, Pair2d padding = 0,
                                 Pair2d dilation = 1, std::int64_t groups = 1) {
  return ops::record<ops::Conv2d>({x, weight, bias}, ops::conv_attrs(stride, padding, dilation, groups));
}

}  // namespace ax
