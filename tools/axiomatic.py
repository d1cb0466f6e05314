"""The axiomatic command from Python, on NumPy arrays: no files by hand, no dependency beyond NumPy.

Each call writes the input (and an array baseline or data set) to a temporary folder as .npy,
runs `axiomatic explain` (or `check`, `info`) with --json, and returns the attributions as a
NumPy array of the input's shape and the command's JSON report as a dict. The folder is removed
afterwards. A failure of the command raises AxiomaticError carrying the command's one-line message.

    import numpy as np
    import axiomatic                                     # tools/axiomatic.py on sys.path

    x = np.load("sandal.npy")                            # the model's input shape, e.g. (1, 28, 28)
    attributions, report = axiomatic.integrated_gradients("model.safetensors", x, steps=64)
    report["target"], report["label"], report["relative_delta"]

The command is found, in this order: the `binary` argument, the AXIOMATIC_BINARY environment
variable, `axiomatic` on the PATH, then build/cli/axiomatic of the source tree this file is in.

Functions (model: a model file path; x: a NumPy array of the model's input shape, or a .png/.npy
path; target: a class index, or None for the predicted class; `**options` become command-line
options: node="conv1" -> --node conv1, max_steps=512 -> --max-steps 512, sigma_absolute=True ->
--sigma-absolute):

    explain(model, x, method="ig", rule=None, steps=None, baseline=None, target=None, **options)
    gradient(model, x, target=None, **options)
    input_x_gradient(model, x, target=None, **options)
    integrated_gradients(model, x, rule="gausslegendre", steps=50, baseline="zero", target=None, **options)
    expected_gradients(model, x, data, samples=None, target=None, **options)
    smoothgrad(model, x, kind="smoothgrad", samples=None, sigma=None, target=None, **options)
    deeplift(model, x, baseline="zero", target=None, **options)
    conductance(model, x, layer, rule="gausslegendre", steps=50, baseline="zero", target=None, **options)
    check(model, x, rule=None, steps=None, baseline=None, target=None, **options) -> report
    info(model) -> the summary text

Each explain-family function returns (attributions, report). A baseline is a SPEC string of the
command ("zero", "white", "blur:5", "file:PATH", ...) or a NumPy array of the input's shape;
`data` (expected gradients) is an array [D, input shape] or a .npy path.
"""

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

__all__ = ["AxiomaticError", "find_binary", "explain", "gradient", "input_x_gradient", "integrated_gradients",
           "expected_gradients", "smoothgrad", "deeplift", "conductance", "check", "info"]

_SOURCE_BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "cli", "axiomatic")


class AxiomaticError(RuntimeError):
    """The command failed: str(error) is its one-line message; status is its exit status (2 for bad
    usage, 1 otherwise) and command the arguments it ran with."""

    def __init__(self, message, status=None, command=None):
        super().__init__(message)
        self.status = status
        self.command = command


def find_binary(binary=None):
    """The path of the axiomatic command (see the module's documentation for the search order)."""
    candidates = [binary] if binary else [os.environ.get("AXIOMATIC_BINARY"), shutil.which("axiomatic"), _SOURCE_BUILD]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if binary:
        raise AxiomaticError(f"the axiomatic command {binary!r} is not an executable file")
    raise AxiomaticError("the axiomatic command was not found: pass binary=, set AXIOMATIC_BINARY, put it on the "
                         f"PATH, or build it at {_SOURCE_BUILD}")


def _option_args(options):
    """{"max_steps": 512, "sigma_absolute": True} -> ["--max-steps", "512", "--sigma-absolute"]."""
    args = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def _array_file(value, folder, name, names):
    """A path as it is; an array written as .npy (float64 stays float64, the rest become float32),
    its path recorded in names for the messages."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    array = np.asarray(value)
    if array.dtype != np.float64:
        array = array.astype(np.float32)
    path = os.path.join(folder, name + ".npy")
    np.save(path, np.ascontiguousarray(array))
    names[path] = f"the {name} array"
    return path


def _run(arguments, binary, failed_check_ok=False, names=None):
    """The command's stdout; its one-line message as AxiomaticError when it fails, with the
    temporary files' paths replaced by what they hold (names: path -> "the input array"). With
    failed_check_ok, exit status 1 with a report on stdout (`check`: an axiom failed) is a result."""
    command = [find_binary(binary)] + arguments
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0 or (failed_check_ok and result.returncode == 1 and result.stdout.strip()):
        return result.stdout
    lines = result.stderr.strip().splitlines()
    message = lines[-1] if lines else f"exit status {result.returncode}"
    prefix = "axiomatic: "
    message = message[len(prefix):] if message.startswith(prefix) else message
    for path, name in (names or {}).items():
        message = message.replace(path, name)
    raise AxiomaticError(message, result.returncode, command)


def _last_json(stdout):
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise AxiomaticError("the command printed no JSON report")
    return json.loads(lines[-1])


def explain(model, x, method="ig", rule=None, steps=None, baseline=None, target=None, binary=None, **options):
    """Runs `axiomatic explain --method METHOD` on x; returns (attributions, report)."""
    return _explain(model, x, method, rule, steps, baseline, target, binary, options, {})


def _explain(model, x, method, rule, steps, baseline, target, binary, options, names):
    with tempfile.TemporaryDirectory(prefix="axiomatic_") as folder:
        out = os.path.join(folder, "attributions.npy")
        arguments = ["explain", "--model", os.fspath(model), "--input", _array_file(x, folder, "input", names),
                     "--method", method, "--out", out, "--json"]
        if baseline is not None and not isinstance(baseline, str):
            baseline = "file:" + _array_file(baseline, folder, "baseline", names)
        arguments += _option_args({"rule": rule, "steps": steps, "baseline": baseline, "target": target, **options})
        report = _last_json(_run(arguments, binary, names=names))
        return np.load(out), report


def gradient(model, x, target=None, **options):
    """dF/dx at x."""
    return explain(model, x, method="gradient", target=target, **options)


def input_x_gradient(model, x, target=None, **options):
    """x * dF/dx."""
    return explain(model, x, method="inputxgradient", target=target, **options)


def integrated_gradients(model, x, rule="gausslegendre", steps=50, baseline="zero", target=None, **options):
    """Integrated Gradients from the baseline; rule="exact" for exact IG on piecewise-linear networks
    (steps are then not used)."""
    return explain(model, x, method="ig", rule=rule, steps=None if rule == "exact" else steps, baseline=baseline,
                   target=target, **options)


def expected_gradients(model, x, data, samples=None, target=None, **options):
    """Expected gradients over baselines drawn from data ([D, input shape] array or .npy path)."""
    with tempfile.TemporaryDirectory(prefix="axiomatic_data_") as folder:
        names = {}
        spec = "data:" + _array_file(data, folder, "data", names)
        return _explain(model, x, "eg", None, None, spec, target, options.pop("binary", None),
                        {"samples": samples, **options}, names)


def smoothgrad(model, x, kind="smoothgrad", samples=None, sigma=None, target=None, **options):
    """SmoothGrad; kind is "smoothgrad", "smoothgrad_sq" or "vargrad"."""
    return explain(model, x, method=kind, samples=samples, sigma=sigma, target=target, **options)


def deeplift(model, x, baseline="zero", target=None, **options):
    """DeepLIFT's rescale rule against the baseline."""
    return explain(model, x, method="deeplift", baseline=baseline, target=target, **options)


def conductance(model, x, layer, rule="gausslegendre", steps=50, baseline="zero", target=None, **options):
    """Conductance of a hidden node's units (attributions have the layer's shape)."""
    return explain(model, x, method="conductance", layer=layer, rule=rule, steps=steps, baseline=baseline,
                   target=target, **options)


def check(model, x, rule=None, steps=None, baseline=None, target=None, binary=None, **options):
    """Runs `axiomatic check` (IG's axioms) on x; returns the report: {"checks": [...], "passed": bool, ...}.
    A failed axiom is a report with passed False, not an exception."""
    with tempfile.TemporaryDirectory(prefix="axiomatic_") as folder:
        names = {}
        arguments = ["check", "--model", os.fspath(model), "--input", _array_file(x, folder, "input", names), "--json"]
        arguments += _option_args({"rule": rule, "steps": steps, "baseline": baseline, "target": target, **options})
        return _last_json(_run(arguments, binary, failed_check_ok=True, names=names))


def info(model, binary=None):
    """`axiomatic info`: the model's nodes, shapes, parameter count and labels, as text."""
    return _run(["info", "--model", os.fspath(model)], binary)
