"""float32 fidelity: how far float32 Integrated Gradients lands from the float64 answer, ours and
PyTorch's, on the same models (random weights) and inputs.

  /usr/bin/python3 bench/fidelity_torch.py [--build build] [--steps 50] [--seed 0] [--seeds N]
                                           [--models M,...] [--baseline zero|random] [--threads N]

Models: the small CNN (LeNet-28 of tools/export_torch.py, 1x28x28), a LeNet-5 (1x28x28, six
channels first), ResNet-18 at 3x32x32, AlexNet at 3x64x64 (torchvision's), and wide_resnet_bn:
wide_resnet50_2's blocks, one a stage, at 3x32x32, with BatchNorm statistics measured on random
inputs (the others keep BatchNorm's initial statistics). Random weights (torch.manual_seed),
exported with tools/export_torch.py's export() (F32 parameters), explained at a uniform [0, 1)
input from a zero baseline (--baseline random: the families test's input and random baseline
image for the seed), the float64 network's predicted class, IG with Gauss-Legendre nodes (50 by
default, as Captum; the families test uses 16). The float64 answer is PyTorch's float64 IG of the
same float32 weights and input (ours in float64 is printed against it too). The figure is the
relative L2 distance ||a - a64|| / ||a64|| (and *_max: the largest error over the largest
attribution, the families test's measure); PyTorch's float32 is the bar (the goal is ours within
10x of it). Prints one JSON line per model and seed; needs PyTorch and NumPy; prints figures,
never fails.
"""
import argparse, json, os, subprocess, sys, tempfile

import numpy
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import export_torch  # noqa: E402
import torch_peer  # noqa: E402


def lenet5():
    # a LeNet-5 at 28x28: 6 channels first, so its first convolution runs the direct loop
    # (at most 8 output channels), the path where the bias used to be added before the products
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def measured_batchnorm(make, shape, batches=4, size=8):
    """A model whose BatchNorm running statistics are measured on data, as a trained network's
    are: train mode over `batches` batches of uniform [0, 1) inputs (the cumulative average),
    drawn from a generator seeded with torch.initial_seed() + 1, then eval mode. Pre-activations
    then centre on ReLU's kink, so some unit along a path lies within float32 rounding of it."""
    def build():
        model = make()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        model.train()
        g = torch.Generator().manual_seed(torch.initial_seed() + 1)
        with torch.no_grad():
            for _ in range(batches):
                model(torch.rand((size,) + shape, generator=g))
        return model.eval()
    return build


def wide_bottlenecks():
    # wide_resnet50_2's class and blocks, one block a stage (tests/torchvision_families_test.py's instance)
    from torchvision.models.resnet import ResNet, Bottleneck
    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, width_per_group=128)


def models():
    yield "small_cnn", export_torch.lenet28, (1, 28, 28)
    yield "lenet5", lenet5, (1, 28, 28)
    yield "resnet18_32", lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32)
    yield "alexnet_64", lambda: torchvision.models.alexnet(num_classes=10), (3, 64, 64)
    yield "wide_resnet_bn", measured_batchnorm(wide_bottlenecks, (3, 32, 32)), (3, 32, 32)


def integrated_gradients(model, x, b, target, steps, dtype):
    alphas, weights = torch_peer.quadrature("gausslegendre", steps)
    m = model.to(dtype)
    xd = x.to(dtype)
    saved = torch_peer.TARGET
    torch_peer.TARGET = target
    try:
        return torch_peer.ig(m, xd, b.to(dtype), steps, 10, alphas, weights)[0].double()
    finally:
        torch_peer.TARGET = saved


def relative_l2(a, ref):
    return float(torch.linalg.norm((a - ref).flatten()) / torch.linalg.norm(ref.flatten()))


def relative_max(a, ref):
    # the families test's measure: the largest error over the largest attribution
    return float((a - ref).abs().max() / ref.abs().max())


def ours(cli, path, x_path, b_path, target, steps, precision, threads):
    out = x_path + "." + precision + ".npy"
    argv = [cli, "explain", "--model", path, "--input", x_path, "--target", str(target), "--rule", "gausslegendre",
            "--steps", str(steps), "--baseline", "file:" + b_path, "--precision", precision, "--out", out]
    if threads:
        argv += ["--threads", str(threads)]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        return None, r.stderr.strip()
    return torch.from_numpy(numpy.load(out)).double(), None


def measure(cli, folder, name, make, shape, seed, steps, threads, baseline):
    """One model and seed: the relative L2 distances from PyTorch's float64 IG."""
    torch.manual_seed(seed)
    model = make().eval()
    for q in model.parameters():
        q.requires_grad_(False)
    path = os.path.join(folder, name + ".safetensors")
    export_torch.export(model, shape, path, check=False)
    if baseline == "random":  # the families test's input and baseline for this seed
        x = torch.rand((1,) + shape, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64).float()
        b = torch.rand((1,) + shape, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64).float()
    else:
        x = torch.rand((1,) + shape, generator=torch.Generator().manual_seed(seed + 1))
        b = torch.zeros_like(x)
    x_path = os.path.join(folder, name + "_x.npy")
    numpy.save(x_path, x[0].numpy().astype(numpy.float32))
    b_path = os.path.join(folder, name + "_b.npy")
    numpy.save(b_path, b[0].numpy().astype(numpy.float32))
    target = int(model.double()(x.double()).argmax())
    a64 = integrated_gradients(model, x, b, target, steps, torch.float64)
    a32 = integrated_gradients(model, x, b, target, steps, torch.float32)
    line = {"model": name, "seed": seed, "input": list(shape), "baseline": baseline, "target": target, "steps": steps,
            "torch_f32": relative_l2(a32, a64), "torch_f32_max": relative_max(a32, a64)}
    for precision in ("f32", "f64"):
        got, error = ours(cli, path, x_path, b_path, target, steps, precision, threads)
        if got is not None and precision == "f32":
            line["ours_f32_max"] = relative_max(got, a64)
        line["ours_" + precision] = relative_l2(got, a64) if got is not None else error
    if isinstance(line["ours_f32"], float):
        line["ours_over_torch"] = line["ours_f32"] / max(line["torch_f32"], 1e-300)
    return line


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="seeds from --seed on, one line each")
    p.add_argument("--models", default="", help="comma-separated names (default: all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--baseline", choices=["zero", "random"], default="zero",
                   help="random: the families test's input and baseline (seeds + 2 and + 3, float64 rounded to float32)")
    a = p.parse_args()
    cli = os.path.join(a.build, "cli", "axiomatic")
    torch.set_num_threads(max(1, a.threads or os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as folder:
        for name, make, shape in models():
            if a.models and name not in a.models.split(","):
                continue
            for seed in range(a.seed, a.seed + a.seeds):
                print(json.dumps(measure(cli, folder, name, make, shape, seed, a.steps, a.threads, a.baseline)), flush=True)

if __name__ == "__main__":
    main()
