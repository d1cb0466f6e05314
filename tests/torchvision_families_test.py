"""Every torchvision 0.14 classification family, exported and checked against PyTorch.

For a small-input instance of each family (random weights; BatchNorm's running statistics, the
affine parameters of every normalization, ConvNeXt's layer scale, ViT's class token and head set
at random away from their initial values; eval mode) the test exports the model with
tools/export_torch.py (F32), then checks `axiomatic explain`:

  - --method gradient --precision f64: F(x) and dF/dx of the predicted class against PyTorch's
    autograd in float64 (the float32 weights widen exactly), relative error below 1e-10 (the
    gradient's largest error relative to its largest entry);
  - --method ig --rule gausslegendre --steps 16 --precision f32 --winograd off, from a random
    baseline image: against the same sum computed by PyTorch in float64, relative error below 1e-4
    (the largest error relative to the largest attribution);
  - the same IG with Winograd on (the default): below 1e-4 too, or else explained by ReLU ties.
    Winograd's rounding is about ten times the direct path's, and a ReLU input within float32's
    error of the kink may be settled on the other side from float64, which moves that point's
    whole gradient (the random ResNet-18 here, through whole passes without the engine's affine
    prefix: one unit of layer2.1's second ReLU, 3.3e-7 from its kink in float64, -2.4e-7 in
    float32, at one of the 16 points: IG 1.5e-3 off; with that unit's slope set to float32's
    side, float64 IG is 1.4e-6 from float32's; the command lands on float64's side). So when the error
    passes 1e-4, the test finds, in float64, the ReLU units within TIE_RELATIVE (1e-5, 17 times
    the largest float32 error measured in a ReLU layer, relative to the layer's largest input) of
    their kink at each point, computes how float64 IG moves when each one's slope is set to the
    other side, and takes those moves greedily (at most MAX_TIES) while they bring float64 IG
    nearer to float32's; the check passes when that leaves it below 1e-4. Anything else, a wrong
    tile or a bad padding included, moves every point and fails.

The BatchNorm statistics are random, not measured on data: with statistics measured on inputs,
pre-activations center on ReLU's kink, some unit along the path lies within float32 rounding of
it, and float32 settles it differently from float64, which moves that point's gradient (PyTorch's
own float32 IG of the ResNeXt instance is then 5e-4 off its float64 IG); the float32 bound holds
for paths that stay clear of kinks by more than rounding. The inputs are small (32x32 where the
network allows; AlexNet 64x64, Inception-V3 75x75). Where the torchvision constructor's model is
large, the test builds a narrower or shallower instance of the same class (ResNet with grouped or
wide bottlenecks, one block a stage; ConvNeXt and VisionTransformer with few layers; VGG and
AlexNet with the classifier's hidden layers narrowed), which runs the same code paths. The swin_* and maxvit_t families are refused by the
exporter with one line naming them, before any file is written.

    /usr/bin/python3 tests/torchvision_families_test.py [--cli build/cli/axiomatic] [--only NAME ...]

Prints a table (family, input, errors, seconds). Exit status 0 when every check passes, 1 when one
fails, 77 (skipped) when torch, torchvision or numpy cannot be imported.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from script_checks import SKIP, ROOT, EXPORTER, check, exact_reference, finish

GRADIENT_TOLERANCE = 1e-10  # float64
IG_TOLERANCE = 1e-4         # float32
IG_STEPS = 16
TIE_RELATIVE = 1e-5  # a ReLU input this near its kink (relative to its layer's largest) is a possible tie
MAX_TIES = 4         # ties the Winograd check may settle the other way


# ------------------------------------------------------------------------------------------------
# The families: name -> (input shape, builder). Builders run after torch.manual_seed.


def families(torch, torchvision):
    nn = torch.nn
    models = torchvision.models
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.resnet import Bottleneck, ResNet
    from torchvision.models.vision_transformer import VisionTransformer

    def narrow_classifier(model, features, hidden=64):
        """VGG's and AlexNet's classifier (Dropout, Linear, ReLU, ...) with `hidden` units
        instead of 4096: the same layers, 1/60 of the weights."""
        layers = list(model.classifier)
        linears = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
        for i in linears:
            layers[i] = nn.Linear(features if i == linears[0] else hidden, 10 if i == linears[-1] else hidden)
        model.classifier = nn.Sequential(*layers)
        return model

    return {
        "resnet18": ((3, 32, 32), lambda: models.resnet18(num_classes=10)),
        # resnext50_32x4d's and wide_resnet50_2's blocks, one per stage
        "resnext50_32x4d": ((3, 32, 32), lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, groups=32,
                                                        width_per_group=4)),
        "wide_resnet50_2": ((3, 32, 32), lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10,
                                                        width_per_group=128)),
        "vgg11_bn": ((3, 32, 32), lambda: narrow_classifier(models.vgg11_bn(num_classes=10), 512 * 7 * 7)),
        "alexnet": ((3, 64, 64), lambda: narrow_classifier(models.alexnet(num_classes=10), 256 * 6 * 6)),
        "squeezenet1_1": ((3, 32, 32), lambda: models.squeezenet1_1(num_classes=10)),
        "densenet121": ((3, 32, 32), lambda: models.densenet121(num_classes=10)),
        # transform_input: x[:, c] * s + t per channel, concatenated (slice, reshape, affine, concat)
        "googlenet": ((3, 32, 32), lambda: models.googlenet(num_classes=10, aux_logits=False, transform_input=True,
                                                            init_weights=False)),
        "inception_v3": ((3, 75, 75), lambda: models.inception_v3(num_classes=10, aux_logits=True,
                                                                  transform_input=True, init_weights=False)),
        "mobilenet_v2": ((3, 32, 32), lambda: models.mobilenet_v2(num_classes=10)),
        "mobilenet_v3_small": ((3, 32, 32), lambda: models.mobilenet_v3_small(num_classes=10)),
        "mobilenet_v3_large": ((3, 32, 32), lambda: models.mobilenet_v3_large(num_classes=10)),
        "efficientnet_b0": ((3, 32, 32), lambda: models.efficientnet_b0(num_classes=10)),
        "efficientnet_v2_s": ((3, 32, 32), lambda: models.efficientnet_v2_s(num_classes=10)),
        "regnet_y_400mf": ((3, 32, 32), lambda: models.regnet_y_400mf(num_classes=10)),
        "regnet_x_400mf": ((3, 32, 32), lambda: models.regnet_x_400mf(num_classes=10)),
        "shufflenet_v2_x0_5": ((3, 32, 32), lambda: models.shufflenet_v2_x0_5(num_classes=10)),
        "mnasnet0_5": ((3, 32, 32), lambda: models.mnasnet0_5(num_classes=10)),
        # convnext_tiny's blocks (LayerNorm2d, depthwise 7x7, layer scale, stochastic depth), narrower
        "convnext_tiny": ((3, 32, 32), lambda: ConvNeXt(
            [CNBlockConfig(24, 48, 1), CNBlockConfig(48, 96, 1), CNBlockConfig(96, 192, 2), CNBlockConfig(192, None, 1)],
            stochastic_depth_prob=0.1, num_classes=10)),
        # vit_b_16's class, two encoder layers, 4 heads, 16 patches of 8x8 and the class token
        "vit_b_16": ((3, 32, 32), lambda: VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                            hidden_dim=64, mlp_dim=128, num_classes=10)),
    }


def randomize(torch, model, generator):
    """BatchNorm's running statistics and every normalization's affine parameters, ConvNeXt's
    layer scale, ViT's class token and any zero-initialized linear layer (ViT's head) set away
    from their initial values."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                m.num_batches_tracked.fill_(7)
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=generator))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=generator))
            elif isinstance(m, torch.nn.Linear) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / m.in_features ** 0.5)
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(0.5 + torch.rand(p.shape, generator=generator))
            elif name == "class_token":
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    model.eval()


# ------------------------------------------------------------------------------------------------
# One family


class ReluProbe:
    """Stands in for torch.nn.functional.relu (nn.ReLU calls it too) in float64 reference passes:
    records each call's input in order and, for the calls in `toggle` ({call: unit indices of the
    flattened sample}), sets those units' slope to the other side of the kink (value unchanged)."""

    def __init__(self, torch):
        self.torch, self.original, self.inputs, self.toggle = torch, torch.nn.functional.relu, [], {}

    def __call__(self, z, inplace=False):
        call = len(self.inputs)
        self.inputs.append(z.detach().clone())
        out = self.original(z)  # a new tensor: every caller uses the returned value
        if call in self.toggle:
            mask = self.torch.zeros_like(z).flatten(1)
            mask[:, self.toggle[call]] = 1
            side = self.torch.where(z > 0, -1.0, 1.0).to(z.dtype)  # slope 1 -> 0, 0 -> 1
            out = out + mask.view_as(z) * side * (z - z.detach())
        return out

    def run(self, fn):
        self.inputs = []
        self.torch.nn.functional.relu = self
        try:
            return fn()
        finally:
            self.torch.nn.functional.relu = self.original


def explain_by_ties(torch, np, reference, points, target, scale, ig_found, ig_expected, weights):
    """The float32 IG's excess over float64's explained by ReLU ties (see the module's comment):
    (relative error left, the ties taken as (point, relu call, unit, float64 input))."""
    probe = ReluProbe(torch)
    probe.run(lambda: reference(points.detach()))
    candidates = []
    for call, z in enumerate(probe.inputs):
        flat = z.flatten(1).abs()
        for k in range(flat.shape[0]):
            near = (flat[k] <= TIE_RELATIVE * flat[k].max()).nonzero().flatten().tolist()
            candidates += [(k, call, unit, z.flatten(1)[k, unit].item()) for unit in near]
    check(len(candidates) <= 500, f"{len(candidates)} ReLU inputs within {TIE_RELATIVE} of their kink (at most 500 tried)")
    def gradient(k, toggle):
        point = points[k:k + 1].detach().clone().requires_grad_(True)
        probe.toggle = toggle
        (g,) = probe.run(lambda: torch.autograd.grad(reference(point).flatten(1)[0, target], point))
        probe.toggle = {}
        return g[0].numpy()

    moves, untoggled = [], {}
    for k, call, unit, _ in candidates[:500]:
        if k not in untoggled:
            untoggled[k] = gradient(k, {})
        moves.append(scale * weights[k] * (gradient(k, {call: [unit]}) - untoggled[k]))
    residual, taken = ig_found - ig_expected, []
    size = np.abs(ig_expected).max()
    while len(taken) < MAX_TIES and moves:
        left = [np.abs(residual - m).max() for m in moves]
        best = int(np.argmin(left))
        if left[best] >= np.abs(residual).max():
            break
        residual = residual - moves[best]
        taken.append(candidates[best])
        moves[best] = np.full_like(moves[best], np.inf)  # each tie once
    return float(np.abs(residual).max() / size), taken


def explain(cli, path, x_path, target, out_path, options):
    command = [cli, "explain", "--model", path, "--input", x_path, "--target", str(target), "--json",
               "--out", out_path] + options
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip()
    return json.loads(run.stdout), ""


def relative(found, expected, np):
    return float(np.abs(found - expected).max() / max(np.abs(expected).max(), 1e-300))


def check_family(name, shape, build, torch, np, export_torch, cli, work, seed):
    torch.manual_seed(seed)
    model = build()
    randomize(torch, model, torch.Generator().manual_seed(seed + 1))
    path = os.path.join(work, f"{name}.safetensors")
    graph = export_torch.export(model, shape, path)

    x = torch.rand([1] + list(shape), generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    x_path = os.path.join(work, f"{name}_x.npy")
    np.save(x_path, x[0].numpy())
    reference = exact_reference(torch, model)

    # F(x) and dF/dx in float64
    xr = x.clone().requires_grad_(True)
    out = reference(xr).flatten(1)[0]
    target = int(out.argmax())
    (grad,) = torch.autograd.grad(out[target], xr)
    expected_f, expected_grad = out[target].item(), grad[0].numpy()
    result, error = explain(cli, path, x_path, target, os.path.join(work, f"{name}_grad.npy"),
                            ["--method", "gradient", "--precision", "f64"])
    check(result is not None, f"{name}: explain --method gradient runs {error}")
    if result is None:
        return None
    f_error = abs(result["f_input"] - expected_f) / max(abs(expected_f), 1e-300)
    grad_error = relative(np.load(os.path.join(work, f"{name}_grad.npy")), expected_grad, np)

    # IG, Gauss-Legendre 16 on [0, 1], from a random baseline b: (x - b) sum_k w_k dF/dx(b + alpha_k (x - b)).
    # Not from zero: near a constant image, max-pool windows hold near ties that float32 rounding
    # settles differently from float64 (PyTorch's own float32 IG of GoogLeNet is then 1e-4 off).
    b = torch.rand([1] + list(shape), generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)
    b_path = os.path.join(work, f"{name}_b.npy")
    np.save(b_path, b[0].numpy())
    nodes, weights = np.polynomial.legendre.leggauss(IG_STEPS)
    alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float64).view(-1, *([1] * len(shape)))
    points = (b + alphas * (x - b)).requires_grad_(True)
    (grads,) = torch.autograd.grad(reference(points).flatten(1)[:, target].sum(), points)
    expected_ig = ((x - b)[0] * (torch.tensor(weights / 2).view(-1, *([1] * len(shape))) * grads).sum(0)).numpy()
    ig = {}
    for winograd in ("off", "on"):
        ig_path = os.path.join(work, f"{name}_ig_{winograd}.npy")
        result, error = explain(cli, path, x_path, target, ig_path, ["--method", "ig", "--rule", "gausslegendre",
                                                                      "--steps", str(IG_STEPS), "--baseline",
                                                                      f"file:{b_path}", "--precision", "f32",
                                                                      "--winograd", winograd])
        check(result is not None, f"{name}: explain --method ig --winograd {winograd} runs {error}")
        if result is None:
            return None
        ig[winograd] = np.load(ig_path).astype(np.float64)
    ig_error = relative(ig["off"], expected_ig, np)
    winograd_error = relative(ig["on"], expected_ig, np)
    ties = []
    if winograd_error >= IG_TOLERANCE:
        left, ties = explain_by_ties(torch, np, reference, points, target, (x - b)[0].numpy(), ig["on"],
                                     expected_ig, weights / 2)
        check(left < IG_TOLERANCE, f"{name}: IG (f32, Winograd) relative error {winograd_error:.1e}, "
                                   f"{left:.1e} with {len(ties)} ReLU ties settled the other way: {ties}")
        for k, call, unit, z in ties:
            print(f"  {name}: Winograd IG {winograd_error:.1e} off; a tie at point {k} (alpha "
                  f"{(nodes[k] + 1) / 2:.4f}), ReLU call {call}, unit {unit}: float64 input {z:+.2e}; "
                  f"{left:.1e} with it settled the other way")

    check(f_error < GRADIENT_TOLERANCE, f"{name}: F(x) relative error {f_error:.1e}")
    check(grad_error < GRADIENT_TOLERANCE, f"{name}: dF/dx relative error {grad_error:.1e}")
    check(ig_error < IG_TOLERANCE, f"{name}: IG (gausslegendre 16, f32, direct) relative error {ig_error:.1e}")
    ops = sorted({node["op"] for node in graph["nodes"]})
    return f_error, grad_error, ig_error, winograd_error, len(ties), len(graph["nodes"]), ops


def refusals(torchvision, export_torch, work):
    """swin_* and maxvit_t: one line naming the family, and no file written."""
    for name in ("swin_t", "swin_v2_t", "maxvit_t"):
        if not hasattr(torchvision.models, name):
            continue
        path = os.path.join(work, f"{name}.safetensors")
        run = subprocess.run([sys.executable, EXPORTER, "--torchvision", name, "--out", path],
                             capture_output=True, text=True)
        lines = run.stderr.strip().splitlines()
        check(run.returncode == 1 and len(lines) == 1 and name.split("_")[0] in lines[0].lower()
              and not os.path.exists(path), f"refused: {name} (exit {run.returncode}): {run.stderr.strip()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "cli", "axiomatic"), help="the axiomatic command")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these families only")
    parser.add_argument("--work", help="folder for the files written (default: a temporary one, removed)")
    args = parser.parse_args()
    try:
        import numpy as np
        import torch
        import torchvision
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP
    if not os.access(args.cli, os.X_OK):
        print(f"FAIL  the axiomatic command {args.cli} is not there")
        return 1
    sys.path.insert(0, os.path.dirname(EXPORTER))
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    import export_torch

    torch.set_num_threads(1)  # the machine is shared
    table = families(torch, torchvision)
    unknown = [n for n in args.only or [] if n not in table]
    if unknown:
        print(f"unknown families: {', '.join(unknown)}; known: {', '.join(table)}")
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchvision_families_") as scratch:
        work = args.work or scratch
        os.makedirs(work, exist_ok=True)
        for k, (name, (shape, build)) in enumerate(table.items()):
            if args.only and name not in args.only:
                continue
            began = time.perf_counter()
            try:
                row = check_family(name, shape, build, torch, np, export_torch, args.cli, work, seed=100 + 10 * k)
            except Exception as e:  # an export that fails is a failed check, and the others still run
                check(False, f"{name}: {type(e).__name__}: {e}")
                row = None
            if row is not None:
                rows.append((name, shape, row, time.perf_counter() - began))
            for leftover in os.listdir(work):  # files of a few hundred MB otherwise pile up
                if leftover.startswith(name):
                    os.remove(os.path.join(work, leftover))
        if not args.only:
            refusals(torchvision, export_torch, work)

    print(f"\n{'family':20s} {'input':9s} {'nodes':>5s} {'F(x) f64':>9s} {'dF/dx f64':>9s} {'IG f32':>9s} "
          f"{'Winograd':>9s} {'ties':>4s} {'s':>5s}")
    for name, shape, (f_error, grad_error, ig_error, winograd_error, ties, count, _), seconds in rows:
        print(f"{name:20s} {'x'.join(map(str, shape)):9s} {count:5d} {f_error:9.1e} {grad_error:9.1e} "
              f"{ig_error:9.1e} {winograd_error:9.1e} {ties:4d} {seconds:5.1f}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
