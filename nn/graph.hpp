// A network: a model's graph recorded onto a tape. Built from a ModelSpec, which comes from a
// model file (nn/model_file) or is written in code. Recording checks what the file reader
// could not: each parameter's shape against its node's input, and that shapes compose.
#pragma once

#include "../autodiff/ops.hpp"
#include "model_spec.hpp"

#include <map>
#include <string>
#include <vector>

namespace ax::nn {

struct RecordOptions {
  std::size_t batch = 1;               // the leading dimension of the input leaf
  bool input_requires_grad = true;     // attribution: d(target)/d(input)
  bool parameters_require_grad = false;  // training: true
  std::string source = "model";        // names the model in error messages (its path)
  // false: parameter leaves get their shapes and unwritten buffers (describe: nothing is run,
  // so no value is read).
  bool read_parameters = true;
  // A batchnorm2d that is the only reader of a conv2d is folded into it: one convolution with
  // weights w[o] s[o] and bias (b[o] - mean[o]) s[o] + beta[o], s = gamma / sqrt(var + eps), in
  // double, recorded under the batch norm's name (constants, not parameters: for inference only).
  // The convolution's own output is then not formed; `keep` names nodes that must stay their own.
  bool fold_batchnorm = false;
  std::vector<std::string> keep;
};

template <class T>
class Network {
 public:
  // Records `spec` onto `tape` (which may already hold other nodes). Throws Error
  // ("<source>: node '<name>': <fault>") when a parameter's shape or the shapes do not fit.
  Network(const ModelSpec& spec, Tape<T>& tape, const RecordOptions& options = {});

  Var<T> input() const { return input_; }
  Var<T> output() const { return output_; }
  // A node by its graph name (the input's name included); throws if there is none, or if it
  // was folded into the batch norm after it.
  Var<T> node(const std::string& name) const;
  // The batch norm a conv2d node was folded into, or "" (RecordOptions::fold_batchnorm).
  std::string folded_into(const std::string& name) const;
  // Every parameter leaf, by tensor name ("conv1.weight"), in graph order.
  const std::vector<std::pair<std::string, Var<T>>>& parameters() const { return parameters_; }
  std::vector<Var<T>> parameter_vars() const;
  // Copies the tape's current parameter values into spec.tensors (e.g. after training).
  void store_parameters(ModelSpec& spec) const;
  Tape<T>& tape() const { return *tape_; }

 private:
  Tape<T>* tape_;
  std::string source_;
  Var<T> input_, output_;
  std::map<std::string, Var<T>> by_name_;
  std::map<std::string, std::string> folded_;  // conv2d name -> the batchnorm2d it is part of
  std::vector<std::pair<std::string, Var<T>>> parameters_;
};

// A model's summary, as `axiomatic info` prints it: input, each node with its op and output
// shape (for one sample), parameter count, output and labels (their count and the first five).
// Shapes come from recording a batch of 0: the network is never run. Names and labels are
// printable().
std::string describe(const ModelSpec& spec, const std::string& source);

// A name or label as it is safe to print on a terminal: newlines, tabs and other control
// characters written as \n, \t, \x1b.
std::string printable(const std::string& text);

extern template class Network<float>;
extern template class Network<double>;

}  // namespace ax::nn
