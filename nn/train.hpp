// Training: the softmax cross-entropy loss and two optimizers, SGD with momentum and Adam,
// with PyTorch's update rules (torch.optim.SGD, torch.optim.Adam), so that a network trained
// here behaves like one trained there.
#pragma once

#include "../autodiff/ops.hpp"

#include <cstdint>
#include <vector>

namespace ax::nn {

// The mean over the batch of -log softmax(logits)[label]: logits [B, K], one_hot [B, K] holds
// 1 at each sample's label (a leaf the caller refills for every batch, see one_hot()).
template <class T>
Var<T> softmax_cross_entropy(Var<T> logits, Var<T> one_hot);

// out [n, classes] = the one-hot rows of labels[0..n-1]. Throws if a label is >= classes.
template <class T>
void one_hot(const std::uint8_t* labels, std::size_t n, std::size_t classes, Tensor<T>& out);

struct SgdOptions {
  double learning_rate = 0.01;
  double momentum = 0.9;      // 0: plain gradient descent
  double weight_decay = 0.0;  // L2, added to the gradient
};

// v = momentum v + g;  p -= learning_rate v   (PyTorch's SGD, dampening 0, not Nesterov)
template <class T>
class Sgd {
 public:
  Sgd(Tape<T>& tape, std::vector<Var<T>> parameters, SgdOptions options = {});
  void step();  // uses the gradients of the last backward()

 private:
  Tape<T>& tape_;
  std::vector<Var<T>> parameters_;
  SgdOptions options_;
  std::vector<Tensor<T>> velocity_;
};

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;  // L2, added to the gradient (torch.optim.Adam, not AdamW)
};

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
// p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
template <class T>
class Adam {
 public:
  Adam(Tape<T>& tape, std::vector<Var<T>> parameters, AdamOptions options = {});
  void step();
  void set_learning_rate(double learning_rate) { options_.learning_rate = learning_rate; }

 private:
  Tape<T>& tape_;
  std::vector<Var<T>> parameters_;
  AdamOptions options_;
  std::vector<Tensor<T>> first_, second_;  // moment estimates m and v
  long steps_ = 0;
};

}  // namespace ax::nn
