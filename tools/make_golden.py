"""Writes the golden files of tests/golden/: small PyTorch models exported as model files, with
PyTorch's answers in float64, so the test suite checks axiomatic against PyTorch without PyTorch
installed (tests/test_golden.cpp).

For each model NAME (cnn, resnet, mobilenet) it writes

    NAME.safetensors     the model, exported by tools/export_torch.py's export() with F64 parameters
    NAME.input.npy       x, the input explained (float64, the per-sample shape)
    NAME.logits.npy      F's output at x (float64, the per-sample output shape)
    NAME.gradient.npy    dF_k/dx at x for the target class k
    NAME.ig_riemann_middle.npy, NAME.ig_gausslegendre.npy
                         Integrated Gradients of F_k from the zero baseline, 16 steps

and manifest.json: each model's name, input shape, target class and labels. IG follows the
library's definition (attribution/path.cpp): (x - x') * sum_k w_k dF/dx(x' + a_k (x - x')) with

    riemann_middle  a_k = (k + 1/2) / n,           w_k = 1 / n,         k = 0 .. n-1
    gausslegendre   a_k = (t_k + 1) / 2,           w_k = v_k / 2,       (t_k, v_k) the n-point
                    Gauss-Legendre nodes and weights on [-1, 1] (numpy.polynomial.legendre.leggauss)

The reference replaces nn.Hardsigmoid by hardtanh(x + 3, 0, 6) / 6 (PyTorch's float64 hardsigmoid
backward uses a float32 1/6). Everything comes from the seed: the same PyTorch gives the same files bit for bit (one thread,
so no reduction order depends on the machine's cores). The models are tiny (a few thousand
parameters) and cover the ops people use: conv2d (padding, stride, groups/depthwise), batchnorm2d
with non-trivial running statistics, relu, relu6, hardswish, hardsigmoid, silu, max and average
pooling, adaptive average pooling, residual add, squeeze-excitation's broadcasting mul, flatten,
linear, and a normalize node in front.

    /usr/bin/python3 tools/make_golden.py [--out tests/golden] [--seed 0] [--check]

--check writes into a temporary folder and compares it with --out byte for byte (exit 1 if any
file differs or is missing).
"""

import argparse
import filecmp
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from export_torch import export  # noqa: E402

STEPS = 16
CLASSES = 10
SHAPE = (3, 16, 16)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
LABELS = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ------------------------------------------------------------------------------------------------
# The models: 3x16x16 -> 10


def cnn():
    """Two conv blocks with max and average pooling, then two linear layers."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),        # 8x8x8
        nn.Conv2d(8, 12, 2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),  # 12x7x7 -> 12x4x4 (a last window of one row)
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),     # 12x5x5
        nn.Flatten(), nn.Linear(12 * 5 * 5, 24), nn.ReLU(), nn.Linear(24, CLASSES))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with batch norm, the input added back (through a
    strided 1x1 conv when the shape changes)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)                              # 8x8x8
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 12, 2)                                # 12x4x4
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(12, CLASSES)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.scale = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.scale(self.fc2(self.relu(self.fc1(self.avgpool(x)))))  # [C, 1, 1] * [C, H, W]


class InvertedResidual(nn.Module):
    """MobileNet-V3's block: expand 1x1, depthwise 3x3, squeeze-excitation, project 1x1, add."""

    def __init__(self, channels, expanded):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(expanded, expanded, 3, 1, 1, groups=expanded, bias=False),
                                       nn.BatchNorm2d(expanded), nn.ReLU6())
        self.se = SqueezeExcitation(expanded, 4)
        self.project = nn.Sequential(nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())  # 8x8x8
        self.block = InvertedResidual(8, 16)
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(16, CLASSES))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


MODELS = {"cnn": cnn, "resnet": ResNet, "mobilenet": MobileNet}


class ExactHardsigmoid(nn.Module):
    """hardsigmoid as hardtanh(x + 3, 0, 6) / 6: the same function, but its float64 backward has
    the exact slope 1/6, where PyTorch's hardsigmoid backward multiplies by the float32 1/6
    (3e-8 off)."""

    def forward(self, x):
        return torch.nn.functional.hardtanh(x + 3, 0.0, 6.0) / 6


def exact_twin(model):
    """The model with every nn.Hardsigmoid replaced by ExactHardsigmoid, for the reference."""
    for name, child in model.named_children():
        if isinstance(child, nn.Hardsigmoid):
            setattr(model, name, ExactHardsigmoid())
        else:
            exact_twin(child)
    return model


def randomize_batchnorm(model, generator):
    """Running statistics and affine parameters away from 0 and 1, so eval-mode batch norm is
    not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
            m.weight.data.copy_(1 + 0.3 * torch.randn(c, generator=generator))
            m.bias.data.copy_(0.2 * torch.randn(c, generator=generator))


# ------------------------------------------------------------------------------------------------
# PyTorch's answers, float64


def quadrature(rule, n):
    """The library's nodes and weights on [0, 1] (attribution/path.cpp)."""
    if rule == "riemann_middle":
        return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    t, v = np.polynomial.legendre.leggauss(n)
    return (t + 1) / 2, v / 2


def gradients(f, points, target):
    """dF_target/dx at each of the points [P, shape]."""
    points = points.clone().requires_grad_(True)
    f(points)[:, target].sum().backward()
    return points.grad


def integrated_gradients(f, x, target, rule, steps):
    alphas, weights = quadrature(rule, steps)
    baseline = torch.zeros_like(x)
    alphas = torch.tensor(alphas, dtype=torch.float64).view(-1, *([1] * x.dim()))
    grads = gradients(f, baseline + alphas * (x - baseline), target)
    total = torch.zeros_like(x)
    for w, g in zip(weights, grads):  # in node order, as the library sums
        total += float(w) * g
    return (x - baseline) * total


def make(name, seed, out):
    torch.manual_seed(seed)
    model = MODELS[name]()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        randomize_batchnorm(model, generator)
    model.eval()
    export(model, SHAPE, os.path.join(out, name + ".safetensors"), labels=LABELS, input_range=(0.0, 1.0),
           normalize=(MEAN, STD), f64=True)

    model = exact_twin(model).double()
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, -1, 1, 1)

    def f(x):  # the exported function: normalize, then the model
        return model((x - mean) / std)

    x = torch.rand(SHAPE, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        logits = f(x.unsqueeze(0))[0]
    target = int(torch.argmax(logits))
    arrays = {
        "input": x,
        "logits": logits,
        "gradient": gradients(f, x.unsqueeze(0), target)[0],
        "ig_riemann_middle": integrated_gradients(f, x, target, "riemann_middle", STEPS),
        "ig_gausslegendre": integrated_gradients(f, x, target, "gausslegendre", STEPS),
    }
    for key, value in arrays.items():
        np.save(os.path.join(out, f"{name}.{key}.npy"), value.detach().numpy().astype("<f8"))
    return {"name": name, "input_shape": list(SHAPE), "target": target, "steps": STEPS, "baseline": "zero",
            "labels": LABELS, "parameters": sum(p.numel() for p in model.parameters())}


def write_all(out, seed):
    os.makedirs(out, exist_ok=True)
    manifest = {"seed": seed, "torch": torch.__version__, "models": []}
    for k, name in enumerate(MODELS):
        manifest["models"].append(make(name, seed + 10 * k, out))
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description="Write the golden files of tests/golden/.")
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"), help="folder (default tests/golden)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--check", action="store_true", help="regenerate in a temporary folder and compare with --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.check:
        write_all(args.out, args.seed)
        print(f"make_golden: wrote {args.out}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        write_all(scratch, args.seed)
        names = sorted(os.listdir(scratch))
        _, mismatch, errors = filecmp.cmpfiles(scratch, args.out, names, shallow=False)
        for name in mismatch + errors:
            print(f"make_golden: {os.path.join(args.out, name)} differs from the regenerated file", file=sys.stderr)
        if mismatch or errors:
            return 1
        print(f"make_golden: the {len(names)} files of {args.out} regenerate bit for bit")
        return 0


if __name__ == "__main__":
    sys.exit(main())
