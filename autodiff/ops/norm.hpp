// Normalizations: the per-channel affine maps on dimension 1 (batchnorm2d in its inference form,
// and normalize), cheap, memory-bound maps over [N, C, plane] (batchnorm2d's run in
// kernels/channel); and layer_norm, over each sample's trailing dimensions.
#pragma once

#include "common.hpp"
#include "../kernels/channel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace ax::ops {

// y = (x - mean) / sqrt(var + eps) * weight + bias, per channel c: torch.nn.BatchNorm2d in eval
// mode. Inputs x[N, C, H, W], running_mean[C], running_var[C], and optionally weight[C] and
// bias[C] (5 inputs; otherwise 1 and 0), attrs.eps.
// With s = 1 / sqrt(var + eps), d = x - mean, and sums over samples and pixels of channel c:
//   gx += gy w s      gmean -= sum(gy) w s      gvar -= sum(gy d) w s^3 / 2
//   gw += sum(gy d) s gbias += sum(gy)
//   ty = (tx - tmean) w s - d w s^3 tvar / 2 + d s tw + tbias
struct BatchNorm2d : OpBase {
  static constexpr const char* name = "batchnorm2d";
  static constexpr Linearity linearity = Linearity::linear_in_first;  // in x, while the statistics stay
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() {
    return file_op({{"eps", &Attrs::eps, Allowed::non_negative}},
                   {{"running_mean", true}, {"running_var", true}, {"weight", false}, {"bias", false}});
  }
  static void check_parameters(const FileParameters& p) {
    const std::vector<std::size_t>& mean = p.shape("running_mean");
    if (mean.size() != 1)
      throw Error("parameter " + p.quoted("running_mean") + " has shape " + dims_string(mean) +
                  "; expected rank 1, [C]");
    for (const char* param : {"running_var", "weight", "bias"})
      if (p.has(param) && p.shape(param) != mean)
        throw Error("parameter " + p.quoted(param) + " has shape " + dims_string(p.shape(param)) + "; expected " +
                    dims_string(mean) + " (the shape of " + p.quoted("running_mean") + ")");
    const std::vector<double>& var = p.values("running_var");
    for (std::size_t i = 0; i < var.size(); ++i)
      if (var[i] < 0)
        throw Error("parameter " + p.quoted("running_var") + " holds " + number_string(var[i]) + " at flat index " +
                    std::to_string(i) + "; a variance cannot be negative");
  }
  // Without weight and bias in the file: BatchNorm2d(affine=False), weight 1 and bias 0.
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    node.require_rank(4, name, "[N, C, H, W]");
    const Shape c{node.input_shape()[1]};
    std::vector<Var<T>> inputs{node.input(), node.parameter("running_mean", c), node.parameter("running_var", c)};
    if (node.has("weight") || node.has("bias")) {
      inputs.push_back(node.has("weight") ? node.parameter("weight", c) : node.constant("weight", full<T>(c, T(1))));
      inputs.push_back(node.has("bias") ? node.parameter("bias", c) : node.constant("bias", zeros<T>(c)));
    }
    return record<BatchNorm2d>(inputs, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    if (x.size() != 4) c.fail("expected an input [N, C, H, W], got " + to_string(x));
    static const char* const names[] = {"", "running_mean", "running_var", "weight", "bias"};
    for (int i = 1; i < c.arity(); ++i)
      if (c.x(i).shape() != Shape{x[1]})
        c.fail(std::string(names[i]) + " has shape " + to_string(c.x(i).shape()) + ", expected [" + std::to_string(x[1]) + "]");
    if (!(c.attrs().eps >= 0)) c.fail("eps " + number_string(c.attrs().eps) + " must not be negative");
    return x;
  }

  // Each pass computes its per-channel numbers into the node's aux buffer ([3 C], kept across
  // passes), then one kernel call maps every plane.
  template <class T> static void forward(OpContext<T>& c) {
    const Channels<T> ch(c);
    T* scale = per_channel(c, ch, 1);
    for (std::size_t k = 0; k < ch.C; ++k) scale[k] = ch.weight(k) * ch.inv_std(k);
    kernels::channel_affine(ch.shape(), c.x(0).data(), ch.mean, scale, ch.b, c.y().data(), false);
  }

  template <class T> static void backward(OpContext<T>& c) {
    const Channels<T> ch(c);
    Tensor<T>* gx = c.gx(0);
    Tensor<T>* gmean = gx_to_add(c, 1);
    Tensor<T>* gvar = gx_to_add(c, 2);
    Tensor<T>* gw = c.arity() == 5 ? gx_to_add(c, 3) : nullptr;
    Tensor<T>* gb = c.arity() == 5 ? gx_to_add(c, 4) : nullptr;
    T* scale = per_channel(c, ch, 3);
    T* sum_gy = scale + ch.C;
    T* sum_gy_d = sum_gy + ch.C;
    for (std::size_t k = 0; k < ch.C; ++k) scale[k] = ch.weight(k) * ch.inv_std(k);
    if (gx) kernels::channel_affine(ch.shape(), c.gy().data(), static_cast<const T*>(nullptr), scale,
                                    static_cast<const T*>(nullptr), gx->data(), !c.gx_unset(0));
    // The channel sums only when a statistic or a weight asks for its gradient (attribution never does).
    if (!gmean && !gvar && !gw && !gb) return;
    const bool need_d = gvar || gw;
    kernels::channel_sums(ch.shape(), c.gy().data(), c.x(0).data(), ch.mean, sum_gy, need_d ? sum_gy_d : nullptr);
    for (std::size_t k = 0; k < ch.C; ++k) {
      const T s = ch.inv_std(k);
      if (gmean) gmean->data()[k] -= sum_gy[k] * scale[k];
      if (gvar) gvar->data()[k] -= sum_gy_d[k] * scale[k] * s * s / T(2);
      if (gw) gw->data()[k] += sum_gy_d[k] * s;
      if (gb) gb->data()[k] += sum_gy[k];
    }
  }

  template <class T> static void tangent(OpContext<T>& c) {
    const Channels<T> ch(c);
    const Tensor<T>* tx = c.tx(0);
    const Tensor<T>* tmean = c.tx(1);
    const Tensor<T>* tvar = c.tx(2);
    const Tensor<T>* tw = c.arity() == 5 ? c.tx(3) : nullptr;
    const Tensor<T>* tb = c.arity() == 5 ? c.tx(4) : nullptr;
    // ty = d spread + offset, then += tx slope, with per-channel
    //   slope = w s, spread = s tw - w s^3 tvar / 2, offset = tbias - tmean w s
    T* slope = per_channel(c, ch, 3);
    T* spread = slope + ch.C;
    T* offset = spread + ch.C;
    for (std::size_t k = 0; k < ch.C; ++k) {
      const T s = ch.inv_std(k), w = ch.weight(k);
      slope[k] = w * s;
      spread[k] = (tw ? s * tw->data()[k] : T(0)) - (tvar ? w * s * s * s * tvar->data()[k] / T(2) : T(0));
      offset[k] = (tb ? tb->data()[k] : T(0)) - (tmean ? tmean->data()[k] * slope[k] : T(0));
    }
    kernels::channel_affine(ch.shape(), c.x(0).data(), ch.mean, spread, offset, c.ty().data(), false);
    if (tx) kernels::channel_affine(ch.shape(), tx->data(), static_cast<const T*>(nullptr), slope,
                                    static_cast<const T*>(nullptr), c.ty().data(), true);
  }

 private:
  // The sizes and per-channel parameters, with weight 1 and bias 0 when they are absent.
  template <class T> struct Channels {
    std::size_t N, C, plane;
    const T *mean, *var, *w, *b;
    T eps;
    explicit Channels(const OpContext<T>& c)
        : N(c.x(0).shape()[0]), C(c.x(0).shape()[1]), plane(c.x(0).shape()[2] * c.x(0).shape()[3]),
          mean(c.x(1).data()), var(c.x(2).data()),
          w(c.arity() == 5 ? c.x(3).data() : nullptr), b(c.arity() == 5 ? c.x(4).data() : nullptr),
          eps(T(c.attrs().eps)) {}
    T inv_std(std::size_t k) const { return T(1) / std::sqrt(var[k] + eps); }
    T weight(std::size_t k) const { return w ? w[k] : T(1); }
    kernels::ChannelShape shape() const { return {N, C, plane}; }
  };

  // `count` arrays of C numbers in the node's aux buffer.
  template <class T> static T* per_channel(OpContext<T>& c, const Channels<T>& ch, std::size_t count) {
    if (c.aux().size() < count * ch.C) c.aux().resize(Shape{count * ch.C});
    return c.aux().data();
  }
};

// y = (x - mean[c]) / std[c] per channel c on dimension 1, as torchvision's Normalize; the
// constants are attrs.mean and attrs.stddev, one per channel or one for all channels.
// gx += gy / std; ty = tx / std.
struct Normalize : OpBase {
  static constexpr const char* name = "normalize";
  static constexpr Linearity linearity = Linearity::linear;
  static FileForm file_form() {
    return file_op({{"mean", &Attrs::mean, Allowed::any, true}, {"std", &Attrs::stddev, Allowed::positive, true}});
  }
  static void finish(Attrs& a, const AttributeNames&) {
    if (a.mean.size() != a.stddev.size() && a.mean.size() != 1 && a.stddev.size() != 1)
      throw Error("mean has " + std::to_string(a.mean.size()) + " numbers and std " + std::to_string(a.stddev.size()) +
                  "; they must agree unless one is a single number");
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    const Shape& x = node.input_shape();
    if (x.size() < 2) node.fail("normalize needs channels on dimension 1, got shape " + to_string(x));
    const auto fits = [&](const std::vector<double>& v) { return v.size() == 1 || v.size() == x[1]; };
    if (!fits(node.attrs().mean) || !fits(node.attrs().stddev))
      node.fail("mean and std need one number or " + std::to_string(x[1]) + " (one per channel), got " +
                std::to_string(node.attrs().mean.size()) + " and " + std::to_string(node.attrs().stddev.size()));
    return record<Normalize>({node.input()}, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    if (x.size() < 2) c.fail("expected an input [N, C, ...], got " + to_string(x));
    const std::vector<double>& mean = c.attrs().mean;
    const std::vector<double>& stddev = c.attrs().stddev;
    for (const std::vector<double>* v : {&mean, &stddev})
      if (v->size() != 1 && v->size() != x[1])
        c.fail(std::string(v == &mean ? "mean" : "std") + " has " + std::to_string(v->size()) + " values for " +
               std::to_string(x[1]) + " channels (give one per channel, or one for all)");
    for (std::size_t k = 0; k < stddev.size(); ++k)
      if (!(stddev[k] > 0)) c.fail("std[" + std::to_string(k) + "] = " + number_string(stddev[k]) + " must be positive");
    return x;
  }
  // In double, whatever T: a std below float's range (0 once rounded) or a mean beyond it
  // cannot turn finite values into NaN; a result beyond T's range is an infinity.
  template <class T> static void forward(OpContext<T>& c) {
    each_channel(c, c.x(0).data(), c.y().data(), [](T x, double mean, double sd) { return narrow<T>((double(x) - mean) / sd); });
  }
  template <class T> static void backward(OpContext<T>& c) {
    T* gx = c.gx(0)->data();
    each_channel(c, c.gy().data(), gx, [](T gy, double, double sd) { return narrow<T>(double(gy) / sd); }, true);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    each_channel(c, c.tx(0)->data(), c.ty().data(), [](T tx, double, double sd) { return narrow<T>(double(tx) / sd); });
  }

 private:
  // A double as T: beyond T's range, an infinity of its sign (no out-of-range conversion).
  template <class T> static T narrow(double v) {
    const double top = double(std::numeric_limits<T>::max());
    return v > top ? std::numeric_limits<T>::infinity() : v < -top ? -std::numeric_limits<T>::infinity() : T(v);
  }
  // out[n, k, i] = f(in[n, k, i], mean[k], std[k]), or out += f(...) when `add`.
  template <class T, class F>
  static void each_channel(const OpContext<T>& c, const T* in, T* out, F f, bool add = false) {
    const Shape& x = c.x(0).shape();
    const std::size_t N = x[0], C = x[1], plane = numel(x) / std::max<std::size_t>(N * C, 1);
    const std::vector<double>& mean = c.attrs().mean;
    const std::vector<double>& stddev = c.attrs().stddev;
    // [N, C, plane]
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t k = 0; k < C; ++k) {
        const double m = mean[mean.size() == 1 ? 0 : k], sd = stddev[stddev.size() == 1 ? 0 : k];
        const std::size_t at = (n * C + k) * plane;
        if (add)
          for (std::size_t i = 0; i < plane; ++i) out[at + i] += f(in[at + i], m, sd);
        else
          for (std::size_t i = 0; i < plane; ++i) out[at + i] = f(in[at + i], m, sd);
      }
  }
};

// y = (x - mean) / sqrt(var + eps) * weight + bias, as torch.nn.LayerNorm: mean and (biased)
// variance over the last attrs.normalized_ndim dimensions, weight and bias of those dimensions
// (3 inputs; otherwise 1 and 0). Seen as rows [M, D], D the normalized elements: with
// r = 1 / sqrt(var + eps), xhat = (x - mean) r, and means over a row,
//   gx += r (g - mean(g) - xhat mean(g xhat)),  g = gy w     gw += sum over rows gy xhat
//   gb += sum over rows gy
//   ty = r (tx - mean(tx) - xhat mean(tx xhat)) w + xhat tw + tb
struct LayerNorm : OpBase {
  static constexpr const char* name = "layer_norm";
  static FileForm file_form() {
    return file_op({{"normalized_ndim", &Attrs::normalized_ndim, Allowed::positive},
                    {"eps", &Attrs::eps, Allowed::non_negative}},
                   {{"weight", false}, {"bias", false}});
  }
  static void check_parameters(const FileParameters& p) {
    const std::size_t rank = static_cast<std::size_t>(p.attrs->normalized_ndim);
    for (const char* param : {"weight", "bias"})
      if (p.has(param) && p.shape(param).size() != rank)
        throw Error("parameter " + p.quoted(param) + " has shape " + dims_string(p.shape(param)) + "; expected rank " +
                    std::to_string(rank) + " (normalized_ndim)");
    if (p.has("weight") && p.has("bias") && p.shape("weight") != p.shape("bias"))
      throw Error("parameter " + p.quoted("bias") + " has shape " + dims_string(p.shape("bias")) + "; expected " +
                  dims_string(p.shape("weight")) + " (the shape of " + p.quoted("weight") + ")");
  }
  // Without weight and bias in the file: LayerNorm(elementwise_affine=False), weight 1 and bias 0.
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    const Shape& x = node.input_shape();
    const std::size_t nd = static_cast<std::size_t>(node.attrs().normalized_ndim);
    if (nd >= x.size())
      node.fail("normalized_ndim " + std::to_string(nd) + " needs an input of rank above " + std::to_string(nd) +
                " (the batch is never normalized over), got shape " + to_string(x));
    const Shape trailing(x.end() - static_cast<std::ptrdiff_t>(nd), x.end());
    std::vector<Var<T>> inputs{node.input()};
    if (node.has("weight") || node.has("bias")) {
      inputs.push_back(node.has("weight") ? node.parameter("weight", trailing) : node.constant("weight", full<T>(trailing, T(1))));
      inputs.push_back(node.has("bias") ? node.parameter("bias", trailing) : node.constant("bias", zeros<T>(trailing)));
    }
    return record<LayerNorm>(inputs, node.attrs());
  }

  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    const std::int64_t nd = c.attrs().normalized_ndim;
    if (nd < 1 || nd >= static_cast<std::int64_t>(x.size()))
      c.fail("normalized_ndim " + std::to_string(nd) + " must be at least 1 and below the rank of " + to_string(x));
    if (c.arity() != 1 && c.arity() != 3) c.fail("takes x, or x, weight and bias");
    const Shape trailing(x.end() - nd, x.end());
    for (int i = 1; i < c.arity(); ++i)
      if (c.x(i).shape() != trailing)
        c.fail(std::string(i == 1 ? "weight" : "bias") + " has shape " + to_string(c.x(i).shape()) + ", expected " +
               to_string(trailing) + " (the normalized dimensions)");
    if (!(c.attrs().eps >= 0)) c.fail("eps " + number_string(c.attrs().eps) + " must not be negative");
    return x;
  }

  template <class T> static void forward(OpContext<T>& c) {
    const Rows<T> rows(c);
    const T* x = c.x(0).data();
    T* y = c.y().data();
    // [M, D]
    for (std::size_t m = 0; m < rows.M; ++m)
      for (std::size_t j = 0; j < rows.D; ++j) y[m * rows.D + j] = rows.xhat(x, m, j) * rows.weight(j) + rows.bias(j);
  }

  template <class T> static void backward(OpContext<T>& c) {
    const Rows<T> rows(c);
    const T* x = c.x(0).data();
    const T* gy = c.gy().data();
    Tensor<T>* gx = c.gx(0);
    Tensor<T>* gw = c.arity() == 3 ? c.gx(1) : nullptr;
    Tensor<T>* gb = c.arity() == 3 ? c.gx(2) : nullptr;
    const T inv_d = T(1) / T(rows.D);
    // [M, D]
    for (std::size_t m = 0; m < rows.M; ++m) {
      const T* gy_row = gy + m * rows.D;
      if (gx) {
        T mean_g = 0, mean_g_xhat = 0;
        for (std::size_t j = 0; j < rows.D; ++j) {
          const T g = gy_row[j] * rows.weight(j);
          mean_g += g * inv_d;
          mean_g_xhat += g * rows.xhat(x, m, j) * inv_d;
        }
        T* gx_row = gx->data() + m * rows.D;
        for (std::size_t j = 0; j < rows.D; ++j)
          gx_row[j] += rows.rstd(m) * (gy_row[j] * rows.weight(j) - mean_g - rows.xhat(x, m, j) * mean_g_xhat);
      }
      for (std::size_t j = 0; j < rows.D; ++j) {
        if (gw) gw->data()[j] += gy_row[j] * rows.xhat(x, m, j);
        if (gb) gb->data()[j] += gy_row[j];
      }
    }
  }

  template <class T> static void tangent(OpContext<T>& c) {
    const Rows<T> rows(c);
    const T* x = c.x(0).data();
    const Tensor<T>* tx = c.tx(0);
    const Tensor<T>* tw = c.arity() == 3 ? c.tx(1) : nullptr;
    const Tensor<T>* tb = c.arity() == 3 ? c.tx(2) : nullptr;
    const T inv_d = T(1) / T(rows.D);
    T* ty = c.ty().data();
    // [M, D]
    for (std::size_t m = 0; m < rows.M; ++m) {
      T* ty_row = ty + m * rows.D;
      std::fill(ty_row, ty_row + rows.D, T(0));
      if (tx) {
        const T* t = tx->data() + m * rows.D;
        T mean_t = 0, mean_t_xhat = 0;
        for (std::size_t j = 0; j < rows.D; ++j) {
          mean_t += t[j] * inv_d;
          mean_t_xhat += t[j] * rows.xhat(x, m, j) * inv_d;
        }
        for (std::size_t j = 0; j < rows.D; ++j)
          ty_row[j] = rows.rstd(m) * (t[j] - mean_t - rows.xhat(x, m, j) * mean_t_xhat) * rows.weight(j);
      }
      for (std::size_t j = 0; j < rows.D; ++j) {
        if (tw) ty_row[j] += rows.xhat(x, m, j) * tw->data()[j];
        if (tb) ty_row[j] += tb->data()[j];
      }
    }
  }

 private:
  // x as rows [M, D] with each row's mean and 1 / sqrt(var + eps), computed into the node's aux
  // buffer ([2 M]) by every pass, and weight 1 and bias 0 when they are absent.
  template <class T> struct Rows {
    std::size_t M, D;
    const T *w, *b, *stats;
    explicit Rows(OpContext<T>& c) {
      const Shape& x = c.x(0).shape();
      D = 1;
      for (std::size_t d = x.size() - static_cast<std::size_t>(c.attrs().normalized_ndim); d < x.size(); ++d) D *= x[d];
      M = D == 0 ? 0 : numel(x) / D;
      w = c.arity() == 3 ? c.x(1).data() : nullptr;
      b = c.arity() == 3 ? c.x(2).data() : nullptr;
      if (c.aux().size() < 2 * M) c.aux().resize(Shape{2 * M});
      T* s = c.aux().data();
      const T* data = c.x(0).data();
      // [M, D]: the mean, then the mean square deviation, in two passes over the row
      for (std::size_t m = 0; m < M; ++m) {
        const T* row = data + m * D;
        T mean = 0, var = 0;
        for (std::size_t j = 0; j < D; ++j) mean += row[j];
        mean /= T(D);
        for (std::size_t j = 0; j < D; ++j) var += (row[j] - mean) * (row[j] - mean);
        var /= T(D);
        s[2 * m] = mean;
        s[2 * m + 1] = T(1) / std::sqrt(var + T(c.attrs().eps));
      }
      stats = s;
    }
    T rstd(std::size_t m) const { return stats[2 * m + 1]; }
    T xhat(const T* x, std::size_t m, std::size_t j) const { return (x[m * D + j] - stats[2 * m]) * stats[2 * m + 1]; }
    T weight(std::size_t j) const { return w ? w[j] : T(1); }
    T bias(std::size_t j) const { return b ? b[j] : T(0); }
  };
};

using NormOps = OpList<BatchNorm2d, Normalize, LayerNorm>;

}  // namespace ax::ops

namespace ax {

// BatchNorm2d in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias per
// channel; all of [C]. Without weight and bias, they are 1 and 0.
template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, double eps = 1e-5) {
  Attrs attrs;
  attrs.eps = eps;
  return ops::record<ops::BatchNorm2d>({x, running_mean, running_var}, attrs);
}
template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, Var<T> weight, Var<T> bias,
                                      double eps = 1e-5) {
  Attrs attrs;
  attrs.eps = eps;
  return ops::record<ops::BatchNorm2d>({x, running_mean, running_var, weight, bias}, attrs);
}

// (x - mean[c]) / stddev[c] per channel c on dimension 1 (any rank >= 2), as torchvision's
// Normalize: constants, one per channel or one for all; stddev > 0.
template <class T> Var<T> normalize(Var<T> x, const std::vector<double>& mean, const std::vector<double>& stddev) {
  Attrs attrs;
  attrs.mean = mean;
  attrs.stddev = stddev;
  return ops::record<ops::Normalize>({x}, attrs);
}

// LayerNorm over the last `normalized_ndim` dimensions, without weight and bias.
template <class T> Var<T> layer_norm(Var<T> x, int normalized_ndim, double eps = 1e-5) {
  Attrs attrs;
  attrs.normalized_ndim = normalized_ndim;
  attrs.eps = eps;
  return ops::record<ops::LayerNorm>({x}, attrs);
}
// LayerNorm over the last dimensions, as many as weight has; bias has weight's shape.
template <class T> Var<T> layer_norm(Var<T> x, Var<T> weight, Var<T> bias, double eps = 1e-5) {
  Attrs attrs;
  attrs.normalized_ndim = static_cast<std::int64_t>(weight.tape->value(weight).dimension());
  attrs.eps = eps;
  return ops::record<ops::LayerNorm>({x, weight, bias}, attrs);
}

}  // namespace ax
