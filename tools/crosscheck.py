"""Does axiomatic agree with PyTorch on this model? Exports a PyTorch model, explains one input
with `axiomatic explain` and with PyTorch's autograd, and prints the differences and both times.

    crosscheck.py (--torchvision NAME [--kwargs JSON] | --file module.py --function build)
                  --input-shape C H W [options]

    --torchvision NAME   a torchvision model, randomly initialized (--kwargs: constructor
                         arguments as JSON, e.g. '{"num_classes": 10, "aux_logits": false}')
    --file F --function B
                         a Python file and a function in it that returns the nn.Module (called
                         with no arguments; its weights are whatever it gives them)
    --state-dict FILE    load weights saved with torch.save(model.state_dict(), FILE) first
    --input-shape D..    the input's shape without the batch
    --range LO HI        the input's value range: x is drawn uniformly from it (default 0 1)
    --seed S             seed of x (default 0)
    --target K           the class explained (default: PyTorch's prediction at x)
    --steps N            IG's Gauss-Legendre steps (default 16)
    --cli PATH           the axiomatic command (default: found as tools/axiomatic.py finds it)
    --keep DIR           keep the model file, x and the attributions in DIR
    --tolerance-f64 T, --tolerance-f32 T
                         other tolerances than those below

The comparisons, each against PyTorch in float64 (the model's parameters as the file stores
them, computed in float64), as the largest absolute difference over the largest absolute value:

    F(x)        axiomatic --precision f64                    tolerance 1e-10
    gradient    axiomatic --method gradient --precision f64  tolerance 1e-10
    IG          axiomatic --method ig --rule gausslegendre --steps N --baseline zero, f64: 1e-10
    IG f32      the same in float32                          tolerance 1e-4
                (PyTorch's own float32 IG is printed beside it for scale)

The times are axiomatic's (the computation as its report gives it, and the command's wall time
with loading) and PyTorch's for the same computation (model already in memory). Exit status 0
when every difference is within its tolerance, 1 when one is beyond it or the model cannot be
exported (one line saying why), 2 for bad usage.
"""

import argparse
import copy
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import axiomatic  # noqa: E402
from export_torch import ExportError, export, torchvision_model  # noqa: E402

F64_TOLERANCE = 1e-10
F32_TOLERANCE = 1e-4


def load_model(args):
    if args.torchvision:
        kwargs = dict(args.kwargs)
        return torchvision_model(args.torchvision, kwargs.pop("num_classes", 1000), kwargs)
    spec = importlib.util.spec_from_file_location("crosscheck_user_module", args.file)
    if spec is None:
        raise ExportError(f"{args.file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, args.function, None)
    if not callable(build):
        raise ExportError(f"{args.file} has no function {args.function!r}")
    model = build()
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{args.file}: {args.function}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


# ------------------------------------------------------------------------------------------------
# PyTorch's side


def gauss_legendre(n):
    """The library's rule on [0, 1] (attribution/path.cpp): a_k = (t_k + 1) / 2, w_k = v_k / 2."""
    t, v = np.polynomial.legendre.leggauss(n)
    return (t + 1) / 2, v / 2


def torch_gradients(model, points, target, chunk=8):
    """dF_target/dx at each point [P, shape], `chunk` points per pass."""
    grads = []
    for start in range(0, points.shape[0], chunk):
        p = points[start:start + chunk].clone().requires_grad_(True)
        model(p).flatten(1)[:, target].sum().backward()
        grads.append(p.grad)
    return torch.cat(grads)


def torch_ig(model, x, target, steps):
    alphas, weights = gauss_legendre(steps)
    alphas = torch.tensor(alphas, dtype=x.dtype).view(-1, *([1] * x.dim()))
    grads = torch_gradients(model, alphas * x, target)  # the zero baseline
    weights = torch.tensor(weights, dtype=x.dtype).view(-1, *([1] * x.dim()))
    return x * (weights * grads).sum(0)


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def relative(found, expected):
    found, expected = np.asarray(found, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = np.abs(expected).max()
    return float(np.abs(found - expected).max() / scale) if scale > 0 else float(np.abs(found).max())


# ------------------------------------------------------------------------------------------------


def crosscheck(args, work):
    model = load_model(args)
    if args.state_dict:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu"))
    model.eval()
    f64_params = any(p.dtype == torch.float64 for p in model.parameters())
    path = os.path.join(work, "model.safetensors")
    export(model, args.input_shape, path, input_range=tuple(args.range), f64=f64_params)

    # The file's parameters are the model's (F32 holds float32 exactly): its float64 twin computes
    # the exact function axiomatic's f64 computes.
    model64 = copy.deepcopy(model).double()
    model32 = copy.deepcopy(model).float()
    lo, hi = args.range
    x = lo + (hi - lo) * torch.rand(args.input_shape, generator=torch.Generator().manual_seed(args.seed),
                                    dtype=torch.float64)
    with torch.no_grad():
        logits = model64(x.unsqueeze(0))[0].flatten()
    target = int(logits.argmax()) if args.target is None else args.target
    if not 0 <= target < logits.numel():
        raise ExportError(f"--target {target} is not one of the model's {logits.numel()} outputs")

    for m, dtype in ((model64, torch.float64), (model32, torch.float32)):  # one-time costs outside the times
        torch_gradients(m, x.to(dtype).unsqueeze(0), target)
    reference = {}
    reference["gradient"], t_grad = timed(lambda: torch_gradients(model64, x.unsqueeze(0), target)[0])
    reference["ig"], t_ig64 = timed(lambda: torch_ig(model64, x, target, args.steps))
    ig32, t_ig32 = timed(lambda: torch_ig(model32, x.float(), target, args.steps))

    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x.numpy())
    common = {"target": target, "binary": args.cli}
    runs = {
        "gradient f64": lambda: axiomatic.gradient(path, x_path, precision="f64", **common),
        "ig f64": lambda: axiomatic.integrated_gradients(path, x_path, steps=args.steps, precision="f64", **common),
        "ig f32": lambda: axiomatic.integrated_gradients(path, x_path, steps=args.steps, precision="f32", **common),
    }
    ours = {name: timed(run) for name, run in runs.items()}  # name -> ((attributions, report), wall seconds)
    for name, ((values, _), _) in ours.items():
        if args.keep:
            np.save(os.path.join(work, name.replace(" ", "_") + ".npy"), values)

    f_x = ours["gradient f64"][0][1]["f_input"]
    rows = [  # quantity, precision, difference, tolerance, axiomatic (compute, wall), PyTorch seconds, note
        ("F(x)", "f64", abs(f_x - float(logits[target])) / abs(float(logits[target])), args.tolerance_f64, None, None, ""),
        ("gradient", "f64", relative(ours["gradient f64"][0][0], reference["gradient"]), args.tolerance_f64,
         ours["gradient f64"], t_grad, ""),
        ("IG", "f64", relative(ours["ig f64"][0][0], reference["ig"]), args.tolerance_f64, ours["ig f64"], t_ig64, ""),
        ("IG", "f32", relative(ours["ig f32"][0][0], reference["ig"]), args.tolerance_f32, ours["ig f32"], t_ig32,
         f"PyTorch f32: {relative(ig32, reference['ig']):.1e}"),
    ]
    shape = "x".join(str(d) for d in args.input_shape)
    what = f"torchvision {args.torchvision}" if args.torchvision else f"{args.file}:{args.function}()"
    print(f"crosscheck {what}: input {shape} in [{lo:g}, {hi:g}] (seed {args.seed}), target {target}, "
          f"IG Gauss-Legendre {args.steps} steps from zero")
    print(f"  {'':9} {'':4} {'difference':>10} {'tolerance':>9}   {'axiomatic':>9} {'(wall)':>8} {'PyTorch':>9}")
    beyond = []
    for quantity, precision, difference, tolerance, ours_run, torch_seconds, note in rows:
        timing = ""
        if ours_run is not None:
            (_, report), wall = ours_run
            timing = f"{report['seconds']:9.3f} {wall:8.2f} {torch_seconds:9.3f}"
        status = "ok" if difference <= tolerance else "BEYOND"
        print(f"  {quantity:9} {precision:4} {difference:10.1e} {tolerance:9.0e}   {timing:28}   {status:6} {note}".rstrip())
        if status != "ok":
            beyond.append(f"{quantity} {precision} {difference:.1e} > {tolerance:.0e}")
    print("  seconds: axiomatic's computation (its report) and the command's wall time with loading; PyTorch's "
          "computation")
    if beyond:
        print(f"crosscheck: beyond the tolerance: {', '.join(beyond)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare axiomatic with PyTorch on a model.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--torchvision", metavar="NAME", help="a torchvision model, randomly initialized")
    which.add_argument("--file", metavar="PY", help="a Python file with a function that builds the model")
    parser.add_argument("--function", metavar="NAME", help="--file: the function (no arguments) that returns the model")
    parser.add_argument("--kwargs", metavar="JSON", help="--torchvision: constructor arguments")
    parser.add_argument("--state-dict", metavar="FILE", help="weights to load first")
    parser.add_argument("--input-shape", type=int, nargs="+", required=True, metavar="D", help="input shape without the batch")
    parser.add_argument("--range", type=float, nargs=2, default=[0.0, 1.0], metavar=("LO", "HI"), help="x's range")
    parser.add_argument("--seed", type=int, default=0, help="seed of x (default 0)")
    parser.add_argument("--target", type=int, help="the class explained (default: the prediction)")
    parser.add_argument("--steps", type=int, default=16, help="IG's Gauss-Legendre steps (default 16)")
    parser.add_argument("--cli", metavar="PATH", help="the axiomatic command")
    parser.add_argument("--keep", metavar="DIR", help="keep the files in DIR")
    parser.add_argument("--tolerance-f64", type=float, default=F64_TOLERANCE, metavar="T", help="default 1e-10")
    parser.add_argument("--tolerance-f32", type=float, default=F32_TOLERANCE, metavar="T", help="default 1e-4")
    args = parser.parse_args(argv)
    if args.file and not args.function:
        parser.error("--file needs --function")
    if args.function and not args.file:
        parser.error("--function goes with --file")
    if args.kwargs is not None and not args.torchvision:
        parser.error("--kwargs goes with --torchvision")
    try:
        args.kwargs = json.loads(args.kwargs) if args.kwargs is not None else {}
    except ValueError as e:
        parser.error(f"--kwargs: not JSON: {e}")
    if not isinstance(args.kwargs, dict):
        parser.error("--kwargs: expected a JSON object of constructor arguments")
    if args.steps < 1 or any(d < 1 for d in args.input_shape) or not args.range[0] < args.range[1]:
        parser.error("--steps and every dimension of --input-shape must be at least 1, and --range LO < HI")

    try:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            return crosscheck(args, args.keep)
        with tempfile.TemporaryDirectory(prefix="crosscheck_") as work:
            return crosscheck(args, work)
    except (ExportError, axiomatic.AxiomaticError, OSError) as e:
        print(f"crosscheck: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
