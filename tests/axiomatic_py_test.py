"""Test of tools/axiomatic.py (the command from Python on NumPy arrays), with NumPy only.

On the golden files (tests/golden/, PyTorch's answers in float64): the gradient and IG returned
for a float64 array agree with PyTorch's to 1e-12, with the report as a dict (target, label);
the command's default precision (f32) returns float32; an array baseline equals the SPEC "zero"
bit for bit; expected gradients take a data set array; check() returns the axioms' report and
info() the summary. Errors: an input of the wrong shape (exit 1) and bad usage (exit 2) raise
AxiomaticError with the command's one-line message and status; a missing command is named. No
temporary file is left behind.

    python3 tests/axiomatic_py_test.py --cli build/cli/axiomatic

Exit status 0 when every check passes, 1 when one fails, 77 (skipped) when numpy cannot be
imported.
"""

import argparse
import json
import os
import sys
import tempfile

from script_checks import SKIP, ROOT, check, finish

GOLDEN = os.path.join(ROOT, "tests", "golden")


def relative(np, found, expected):
    return float(np.abs(found.astype(np.float64) - expected).max() / np.abs(expected).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "cli", "axiomatic"), help="the axiomatic command")
    args = parser.parse_args()
    try:
        import numpy as np
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    import axiomatic

    os.environ["AXIOMATIC_BINARY"] = args.cli
    scratch = tempfile.mkdtemp(prefix="axiomatic_py_test_")
    tempfile.tempdir = scratch  # the module's temporary files go here: the test sees what is left

    with open(os.path.join(GOLDEN, "manifest.json"), encoding="utf-8") as f:
        cnn = next(m for m in json.load(f)["models"] if m["name"] == "cnn")
    model = os.path.join(GOLDEN, "cnn.safetensors")
    golden = {what: np.load(os.path.join(GOLDEN, f"cnn.{what}.npy"))
              for what in ("input", "gradient", "ig_riemann_middle", "ig_gausslegendre")}
    x, target = golden["input"], cnn["target"]

    grad, report = axiomatic.gradient(model, x, target=target, precision="f64")
    check(isinstance(report, dict) and report["method"] == "gradient" and report["target"] == target
          and report["label"] == cnn["labels"][target], f"gradient: the report as a dict: {report.get('label')}")
    check(grad.shape == x.shape and grad.dtype == np.float64 and relative(np, grad, golden["gradient"]) <= 1e-12,
          f"gradient: PyTorch's to 1e-12 ({relative(np, grad, golden['gradient']):.1e})")
    for rule in ("riemann_middle", "gausslegendre"):
        ig, report = axiomatic.integrated_gradients(model, x, rule=rule, steps=16, target=target, precision="f64")
        error = relative(np, ig, golden["ig_" + rule])
        check(report["rule"] == rule and report["steps"] == 16 and error <= 1e-12, f"IG {rule}: PyTorch's to 1e-12 ({error:.1e})")

    ig32, report32 = axiomatic.integrated_gradients(model, x.astype(np.float32), steps=16, target=target)
    check(ig32.dtype == np.float32 and report32["precision"] == "f32", "the default precision f32 returns float32")
    check(relative(np, ig32, golden["ig_gausslegendre"]) <= 1e-3,
          f"float32 IG near PyTorch's ({relative(np, ig32, golden['ig_gausslegendre']):.1e})")
    with_array, _ = axiomatic.integrated_gradients(model, x, steps=16, baseline=np.zeros_like(x), target=target, precision="f64")
    with_spec, _ = axiomatic.integrated_gradients(model, x, steps=16, baseline="zero", target=target, precision="f64")
    check(np.array_equal(with_array, with_spec), "an array baseline equals the SPEC 'zero' bit for bit")

    data = np.random.default_rng(0).random((4,) + x.shape)
    eg, report = axiomatic.expected_gradients(model, x, data, samples=8, target=target, seed=1)
    check(eg.shape == x.shape and report["method"] == "eg" and "standard_error" in report,
          "expected gradients from a data set array")
    axioms = axiomatic.check(model, x, rule="gausslegendre", steps=16, target=target)
    check(isinstance(axioms.get("checks"), list) and "passed" in axioms, "check(): the axioms' report as a dict")
    summary = axiomatic.info(model)
    check("labels 10: 0 plane" in summary and "parameters" in summary, "info(): the summary text")

    try:
        axiomatic.gradient(model, x[:, :8, :], target=target)
        error = None
    except axiomatic.AxiomaticError as e:
        error = e
    check(error is not None and error.status == 1 and "\n" not in str(error) and "shape" in str(error)
          and str(error).startswith("the input array: ") and scratch not in str(error),
          f"an input of the wrong shape: AxiomaticError naming the array: {error}")
    try:
        axiomatic.integrated_gradients(model, x, steps=0)
        error = None
    except axiomatic.AxiomaticError as e:
        error = e
    check(error is not None and error.status == 2 and "--steps" in str(error), f"bad usage: AxiomaticError (status 2): {error}")
    try:
        axiomatic.gradient(model, x, binary=os.path.join(scratch, "no_such_axiomatic"))
        error = None
    except axiomatic.AxiomaticError as e:
        error = e
    check(error is not None and "no_such_axiomatic" in str(error), f"a missing command is named: {error}")

    left = os.listdir(scratch)
    check(not left, f"no temporary file left behind: {left}")
    os.rmdir(scratch) if not left else None
    return finish()


if __name__ == "__main__":
    sys.exit(main())
