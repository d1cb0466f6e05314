// Per-channel affine maps on dimension 1: batchnorm2d in its inference form, and normalize.
// Both are cheap, memory-bound loops over [N, C, plane], written out here.
#pragma once

#include "common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace ax::ops {

// "1e-05", "0", "-0.5": a number as an error message shows it.
inline std::string number_string(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// y = (x - mean) / sqrt(var + eps) * weight + bias, per channel c: torch.nn.BatchNorm2d in eval
// mode. Inputs x[N, C, H, W], running_mean[C], running_var[C], and optionally weight[C] and
// bias[C] (5 inputs; otherwise 1 and 0). eps = attrs.a.
// With s = 1 / sqrt(var + eps), d = x - mean, and sums over samples and pixels of channel c:
//   gx += gy w s      gmean -= sum(gy) w s      gvar -= sum(gy d) w s^3 / 2
//   gw += sum(gy d) s gbias += sum(gy)
//   ty = (tx - tmean) w s - d w s^3 tvar / 2 + d s tw + tbias
struct BatchNorm2d {
  static constexpr const char* name = "batchnorm2d";
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    if (x.size() != 4) c.fail("expected an input [N, C, H, W], got " + to_string(x));
    static const char* const names[] = {"", "running_mean", "running_var", "weight", "bias"};
    for (int i = 1; i < c.arity(); ++i)
      if (c.x(i).shape() != Shape{x[1]})
        c.fail(std::string(names[i]) + " has shape " + to_string(c.x(i).shape()) + ", expected [" + std::to_string(x[1]) + "]");
    if (!(c.attrs().a >= 0)) c.fail("eps " + number_string(c.attrs().a) + " must not be negative");
    return x;
  }

  template <class T> static void forward(OpContext<T>& c) {
    const Channels<T> ch(c);
    const T* x = c.x(0).data();
    T* y = c.y().data();
    // [N, C, plane]
    for (std::size_t n = 0; n < ch.N; ++n)
      for (std::size_t k = 0; k < ch.C; ++k) {
        const T mean = ch.mean[k], scale = ch.weight(k) * ch.inv_std(k), shift = ch.bias(k);
        const std::size_t at = (n * ch.C + k) * ch.plane;
        for (std::size_t i = 0; i < ch.plane; ++i) y[at + i] = (x[at + i] - mean) * scale + shift;
      }
  }

  template <class T> static void backward(OpContext<T>& c) {
    const Channels<T> ch(c);
    const T* x = c.x(0).data();
    const T* gy = c.gy().data();
    Tensor<T>* gx = c.gx(0);
    Tensor<T>* gmean = c.gx(1);
    Tensor<T>* gvar = c.gx(2);
    Tensor<T>* gw = c.arity() == 5 ? c.gx(3) : nullptr;
    Tensor<T>* gb = c.arity() == 5 ? c.gx(4) : nullptr;
    // [C] channels, each over [N, plane]
    for (std::size_t k = 0; k < ch.C; ++k) {
      const T s = ch.inv_std(k), w = ch.weight(k), mean = ch.mean[k];
      T sum_gy = T(0), sum_gy_d = T(0);
      for (std::size_t n = 0; n < ch.N; ++n) {
        const std::size_t at = (n * ch.C + k) * ch.plane;
        for (std::size_t i = 0; i < ch.plane; ++i) {
          sum_gy += gy[at + i];
          sum_gy_d += gy[at + i] * (x[at + i] - mean);
          if (gx) gx->data()[at + i] += gy[at + i] * w * s;
        }
      }
      if (gmean) gmean->data()[k] -= sum_gy * w * s;
      if (gvar) gvar->data()[k] -= sum_gy_d * w * s * s * s / T(2);
      if (gw) gw->data()[k] += sum_gy_d * s;
      if (gb) gb->data()[k] += sum_gy;
    }
  }

  template <class T> static void tangent(OpContext<T>& c) {
    const Channels<T> ch(c);
    const T* x = c.x(0).data();
    const T* tx = c.tx(0) ? c.tx(0)->data() : nullptr;
    const Tensor<T>* tmean = c.tx(1);
    const Tensor<T>* tvar = c.tx(2);
    const Tensor<T>* tw = c.arity() == 5 ? c.tx(3) : nullptr;
    const Tensor<T>* tb = c.arity() == 5 ? c.tx(4) : nullptr;
    T* ty = c.ty().data();
    // [N, C, plane]: ty = tx slope + d spread + offset, with per-channel
    //   slope = w s, spread = s tw - w s^3 tvar / 2, offset = tbias - tmean w s
    for (std::size_t k = 0; k < ch.C; ++k) {
      const T s = ch.inv_std(k), w = ch.weight(k), mean = ch.mean[k];
      const T slope = w * s;
      const T spread = (tw ? s * tw->data()[k] : T(0)) - (tvar ? w * s * s * s * tvar->data()[k] / T(2) : T(0));
      const T offset = (tb ? tb->data()[k] : T(0)) - (tmean ? tmean->data()[k] * slope : T(0));
      for (std::size_t n = 0; n < ch.N; ++n) {
        const std::size_t at = (n * ch.C + k) * ch.plane;
        for (std::size_t i = 0; i < ch.plane; ++i)
          ty[at + i] = (tx ? tx[at + i] * slope : T(0)) + (x[at + i] - mean) * spread + offset;
      }
    }
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
          eps(T(c.attrs().a)) {}
    T inv_std(std::size_t k) const { return T(1) / std::sqrt(var[k] + eps); }
    T weight(std::size_t k) const { return w ? w[k] : T(1); }
    T bias(std::size_t k) const { return b ? b[k] : T(0); }
  };
};

// y = (x - mean[c]) / std[c] per channel c on dimension 1, as torchvision's Normalize; the
// constants are attrs.mean and attrs.stddev, one per channel or one for all channels.
// gx += gy / std; ty = tx / std.
struct Normalize {
  static constexpr const char* name = "normalize";
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
  template <class T> static void forward(OpContext<T>& c) {
    each_channel(c, c.x(0).data(), c.y().data(), [](T x, T mean, T sd) { return (x - mean) / sd; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    T* gx = c.gx(0)->data();
    each_channel(c, c.gy().data(), gx, [](T gy, T, T sd) { return gy / sd; }, true);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    each_channel(c, c.tx(0)->data(), c.ty().data(), [](T tx, T, T sd) { return tx / sd; });
  }

 private:
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
        const T m = T(mean[mean.size() == 1 ? 0 : k]), sd = T(stddev[stddev.size() == 1 ? 0 : k]);
        const std::size_t at = (n * C + k) * plane;
        if (add)
          for (std::size_t i = 0; i < plane; ++i) out[at + i] += f(in[at + i], m, sd);
        else
          for (std::size_t i = 0; i < plane; ++i) out[at + i] = f(in[at + i], m, sd);
      }
  }
};

}  // namespace ax::ops
