// One explanation end to end, as the `axiomatic explain` command runs it: read the model and the
// input, build the target and the baseline, run the method, write the attributions, and
// report. The command line only fills an ExplainRequest.
#pragma once

#include "methods.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ax::attr {

struct ExplainRequest {
  std::string model;                 // .safetensors model file, or a toy .json
  std::string input;                 // .png or .npy of the model's input shape
  // More inputs, explained after `input` with one engine (the tape recorded once): files of the
  // model's input shape, folders (their .png and .npy files, by name), and batches: an .npy
  // whose rank is the model input's rank + 1 holds one input per row of its leading dimension.
  // With more than one input, or any folder or batch, the attributions are stacked [inputs, ...]
  // and each input gets its own report (with its "input" name). Every input is read and checked
  // before the first is explained.
  std::vector<std::string> inputs;
  std::string out;                   // .npy for the attributions ("" writes none)
  std::string path_csv;              // IG only: alpha, F, cumulative sum per node ("" writes none)
  TargetSpec target;
  std::string method = "ig";         // gradient|inputxgradient|ig|eg|smoothgrad|smoothgrad_sq|vargrad|conductance
  std::string layer;                 // ig: layer IG on this hidden node; conductance: required
  Rule rule = Rule::gausslegendre;
  std::size_t steps = 50;
  double tolerance = 0;
  std::size_t max_steps = 4096;
  std::string baseline = "zero";     // a SPEC of baseline.hpp
  std::size_t samples = 0;           // 0: the method's default (eg 100, smoothgrad 50, random baselines 10)
  double sigma = 0.15;               // SmoothGrad's noise
  bool sigma_absolute = false;       // false: sigma is relative to the input range (hi - lo)
  bool absolute = false;             // gradient: |dF/dx|
  std::uint64_t seed = 0;
  bool float64 = false;              // --precision f64
  std::size_t memory = std::size_t(1) << 30;
  std::size_t max_pieces = 1000000;  // --rule exact: the cap on linear pieces
  double timeout = 0;                // seconds; past it the run stops with an error (0: no limit)
  std::size_t threads = 0;           // the kernels' threads (0: as set, by default the cores available)
  // `axiomatic check` only
  std::string equivalent;            // a functionally equivalent model file ("" : a rescaled twin)
  double check_tolerance = -1;       // < 0: the default for the precision and rule
};

// Runs the request; returns the report (method, rule, steps, target, label, f_input, f_baseline,
// sum, delta, relative_delta, seconds, ...), or for many inputs an array of their reports.
// Throws Error with a one-line message; a failure writes nothing.
nlohmann::json explain(const ExplainRequest& request);
// The same, one report per input, in order (a single input's without an "input" name). Each
// input's attributions and report are the bits a run of its own would give.
std::vector<nlohmann::json> explain_inputs(const ExplainRequest& request);

// Runs the axiom checks (axioms.hpp) of IG with the request's rule on its model, input and
// baseline: {"checks": [{axiom, error, tolerance, passed, applicable, detail}], "passed": bool}.
nlohmann::json check(const ExplainRequest& request);

// The report of an attribution as JSON (without file names). The label is the output's: given
// only when `node` (the explained node) is empty or the graph's output.
template <class T>
nlohmann::json report(const Attribution<T>& a, const nn::GraphSpec& graph, const std::string& node = "");

// The engine options of a request: memory budget, the model's name, the deadline `timeout`
// seconds from now (none for 0), and the thread count (0: leave it as set).
EngineOptions engine_options(std::size_t memory, const std::string& source, double timeout, std::size_t threads = 0);

}  // namespace ax::attr
