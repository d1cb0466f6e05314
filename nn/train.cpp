#include "train.hpp"

#include <cmath>

namespace ax::nn {

template <class T>
Var<T> softmax_cross_entropy(Var<T> logits, Var<T> one_hot) {
  // the one-hot product picks each sample's label; mean over the batch keeps the loss right
  // when the tape is replayed with another batch size
  return -mean(sum(log_softmax(logits, 1) * one_hot, 1));
}

template <class T>
void one_hot(const std::uint8_t* labels, std::size_t n, std::size_t classes, Tensor<T>& out) {
  out.resize(Shape{n, classes});
  out.fill(T(0));
  for (std::size_t i = 0; i < n; ++i) {
    if (labels[i] >= classes)
      throw Error("one_hot: label " + std::to_string(labels[i]) + " of sample " + std::to_string(i) +
                  " is not below the class count " + std::to_string(classes));
    out(i, labels[i]) = T(1);
  }
}

namespace {
template <class T>
std::vector<Tensor<T>> zeros_like(Tape<T>& tape, const std::vector<Var<T>>& parameters) {
  std::vector<Tensor<T>> z;
  for (const Var<T>& p : parameters) {
    if (!tape.requires_grad(p)) throw Error("optimizer: " + tape.describe(p.id) + " does not require grad");
    z.push_back(zeros<T>(tape.value(p).shape()));
  }
  return z;
}
}  // namespace

template <class T>
Sgd<T>::Sgd(Tape<T>& tape, std::vector<Var<T>> parameters, SgdOptions options)
    : tape_(tape), parameters_(std::move(parameters)), options_(options), velocity_(zeros_like(tape, parameters_)) {}

template <class T>
void Sgd<T>::step() {
  const T lr = T(options_.learning_rate), mu = T(options_.momentum), decay = T(options_.weight_decay);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    T* p = tape_.leaf_value(parameters_[k]).data();
    const T* g = tape_.grad(parameters_[k]).data();
    T* v = velocity_[k].data();
    // [parameter elements]
    for (std::size_t i = 0; i < velocity_[k].size(); ++i) {
      v[i] = mu * v[i] + (g[i] + decay * p[i]);
      p[i] -= lr * v[i];
    }
  }
}

template <class T>
Adam<T>::Adam(Tape<T>& tape, std::vector<Var<T>> parameters, AdamOptions options)
    : tape_(tape),
      parameters_(std::move(parameters)),
      options_(options),
      first_(zeros_like(tape, parameters_)),
      second_(zeros_like(tape, parameters_)) {}

template <class T>
void Adam<T>::step() {
  ++steps_;
  const T lr = T(options_.learning_rate), b1 = T(options_.beta1), b2 = T(options_.beta2);
  const T eps = T(options_.epsilon), decay = T(options_.weight_decay);
  const T correction1 = T(1) - T(std::pow(options_.beta1, steps_));
  const T correction2 = T(1) - T(std::pow(options_.beta2, steps_));
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    T* p = tape_.leaf_value(parameters_[k]).data();
    const T* g = tape_.grad(parameters_[k]).data();
    T* m = first_[k].data();
    T* v = second_[k].data();
    // [parameter elements]
    for (std::size_t i = 0; i < first_[k].size(); ++i) {
      const T gi = g[i] + decay * p[i];
      m[i] = b1 * m[i] + (T(1) - b1) * gi;
      v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
      p[i] -= lr * (m[i] / correction1) / (std::sqrt(v[i] / correction2) + eps);
    }
  }
}

template Var<float> softmax_cross_entropy(Var<float>, Var<float>);
template Var<double> softmax_cross_entropy(Var<double>, Var<double>);
template void one_hot(const std::uint8_t*, std::size_t, std::size_t, Tensor<float>&);
template void one_hot(const std::uint8_t*, std::size_t, std::size_t, Tensor<double>&);
template class Sgd<float>;
template class Sgd<double>;
template class Adam<float>;
template class Adam<double>;

}  // namespace ax::nn
