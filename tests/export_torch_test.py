"""Test of tools/export_torch.py against the axiomatic command.

Exports PyTorch models and checks that `axiomatic explain --method gradient --precision f64`
computes what PyTorch's autograd computes in float64: the target's value F(x) and the input
gradient dF/dx, to a relative error below 1e-10 (the gradient's error relative to its largest
entry). The models:

  lenet      the LeNet-28 with random weights, exported by the command line (--lenet --seed,
             with --labels), F32;
  resnet18   torchvision's, num_classes=10, random BatchNorm running statistics and affine
             parameters (so eval-mode BN is not the identity), an ImageNet normalize node in
             front, F32; 3x224x224;
  zoo        a small network with every other op: conv2d with stride, dilation and groups,
             batchnorm2d, leaky_relu, sigmoid, tanh, max and average pools with ceil_mode (one
             window dropped at the edge) and count_include_pad=False, adaptive average pool to
             2x3, concat, sub, mul, add, identity, flatten, linear, softmax; in float64 with
             weights that float32 cannot hold, written as F64. A twin ends in log_softmax and
             uses function forms (F.relu, torch.flatten, F.max_pool2d, F.dropout, ...), written as F32;
  activations  the ops added for the torchvision families (hardtanh/ReLU6, silu, hardswish,
             hardsigmoid, gelu in both forms, layer_norm channels-last with random weight and
             bias, permute, transpose, view, reshape, flatten to an inner dimension), as modules
             and functions, float64, F64;
  mobilenet_v2 torchvision's, num_classes=10, random BatchNorm statistics, 3x32x32, F32;
  mobilenet_v3_small likewise: hardswish, and squeeze-excitation's broadcasting mul.

It also reads the files back with a small safetensors reader of its own (tiling, dtypes,
num_batches_tracked stored as I64, state_dict round trip), and checks that models the format
cannot express are refused with one line naming the module: padding='same', padding_mode,
divisor_override, pool dilation, an unsupported module, a permute that moves the
batch, a fixed batch size in view, two inputs, two outputs, an in-place update
read again, a broadcast between different ranks, a number divided by a tensor; and by the command
line (swin_t, refused by name).

    /usr/bin/python3 tests/export_torch_test.py [--cli build/cli/axiomatic] [--work DIR]

Exit status 0 when every check passes, 1 when one fails, 77 (skipped) when torch, torchvision
or numpy cannot be imported.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

from script_checks import SKIP, ROOT, EXPORTER, check, exact_reference, finish

TOLERANCE = 1e-10


# ------------------------------------------------------------------------------------------------
# Models


def build_models(torch, nn, F):
    class Zoo(nn.Module):
        """Every op the LeNet and the ResNet do not use. Input 3x12x8."""

        def __init__(self, functional=False):
            super().__init__()
            self.functional = functional
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.act = nn.LeakyReLU(0.1)
            # Height 12 -> 7 with ceil_mode (6 without): the extra window holds one input row, one
            # of padding and one beyond it. Width 8 -> 3: ceil_mode's extra window would start in
            # the right padding and is dropped.
            self.avg = nn.AvgPool2d((3, 2), stride=(2, 3), padding=1, ceil_mode=True, count_include_pad=False)
            self.max = nn.MaxPool2d((3, 2), stride=(2, 3), padding=1, ceil_mode=True)
            # Every attribute different along height and width: 16x7x3 -> 8x7x2.
            self.mix = nn.Conv2d(16, 8, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2, bias=False)
            self.same = nn.Identity()
            self.adapt = nn.AdaptiveAvgPool2d((2, 3))
            self.flat = nn.Flatten()
            self.fc = nn.Linear(8 * 2 * 3, 12)
            self.skip = nn.Linear(8 * 2 * 3, 12, bias=False)
            self.out = nn.Linear(12, 5)
            self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            h = self.act(self.bn(self.conv(x)))
            if self.functional:
                a = torch.sigmoid(F.avg_pool2d(h, (3, 2), (2, 3), 1, True, False))
                b = torch.tanh(F.max_pool2d(h, (3, 2), stride=(2, 3), padding=1, ceil_mode=True))
            else:
                a = torch.sigmoid(self.avg(h))
                b = torch.tanh(self.max(h))
            m = a * b - b
            c = self.same(self.mix(torch.cat([a, m], dim=1)))
            d = F.adaptive_avg_pool2d(c, (2, 3)) if self.functional else self.adapt(c)
            f = torch.flatten(d, 1) if self.functional else self.flat(d)
            z = torch.add(self.fc(f), self.skip(f))
            z = F.relu(z) if self.functional else z.relu()
            if self.functional:
                z = F.dropout(z, 0.3, self.training)  # traced in eval mode: the identity
            y = self.out(z)
            return F.log_softmax(y, dim=-1) if self.functional else self.softmax(y)

    return Zoo


def build_activations(torch, nn, F):
    class Activations(nn.Module):
        """The ops added for the torchvision families, as modules and as functions: hardtanh
        (ReLU6, F.relu6, F.hardtanh), silu, hardswish, hardsigmoid, gelu (both forms), layer_norm
        over channels-last (one and two dimensions), permute, transpose, contiguous, view and
        reshape (with x.size(0) and with -1), flatten to an inner dimension. Input 3x8x8."""

        def __init__(self):
            super().__init__()
            self.hardsigmoid_fn = F.hardsigmoid  # the reference swaps in an exact form (exact_reference)
            self.conv = nn.Conv2d(3, 4, 3)  # 4x6x6
            self.relu6 = nn.ReLU6()
            self.clamp = nn.Hardtanh(-0.5, 0.75)
            self.swish = nn.SiLU()
            self.hswish = nn.Hardswish()
            self.hsig = nn.Hardsigmoid()
            self.gelu = nn.GELU()
            self.gelu_tanh = nn.GELU(approximate="tanh")
            self.ln = nn.LayerNorm(4)          # channels-last, as ConvNeXt
            self.ln2 = nn.LayerNorm([6, 4], eps=1e-3)
            self.fc = nn.Linear(144, 7)

        def forward(self, x):
            h = self.conv(x)
            h = self.relu6(h) + self.clamp(h) + F.relu6(h) - F.hardtanh(h, -2.0, 0.5)
            h = self.swish(h) * F.silu(h) + self.hsig(h)
            h = h.permute(0, 2, 3, 1)  # N, 6, 6, 4
            h = self.ln(self.gelu(h))
            h = torch.permute(F.gelu(h, approximate="tanh"), (0, 3, 1, 2)).contiguous()
            h = self.hswish(h) + F.hardswish(h) * self.hardsigmoid_fn(h)
            h = h.view(h.size(0), -1, 4)  # N, 36, 4
            h = self.ln2(h.reshape(-1, 6, 6, 4))
            h = torch.flatten(self.gelu_tanh(h), 1, 2).transpose(1, 2)  # N, 4, 36
            return self.fc(torch.reshape(h, (-1, 144)))

    return Activations


def build_tokens(torch, nn, F):
    class Tokens(nn.Module):
        """What ShuffleNet, ConvNeXt, Inception and ViT export through, in one network: sizes read
        and unpacked (x.size(), x.shape, x.dim()) with arithmetic on them, chunk, x[:, i] and
        x[:, a:b], unsqueeze, numbers with tensors (affine), a parameter as a tensor (constant)
        broadcast in a mul and an add, a class token expanded and prepended (concat), self-attention
        (nn.MultiheadAttention), mean over [2, 3], stochastic depth. Input 3x8x8."""

        def __init__(self):
            super().__init__()
            import torchvision
            self.conv = nn.Conv2d(3, 8, 3, padding=1)                       # 8x8x8
            self.scale = nn.Parameter(0.5 + torch.rand(4, 1, 1))            # a layer scale [C, 1, 1]
            self.token = nn.Parameter(torch.randn(1, 1, 6))                 # a class token
            self.position = nn.Parameter(torch.randn(1, 33, 6))             # [1, S, E]
            self.embed = nn.Linear(4, 6)
            self.attention = nn.MultiheadAttention(6, 2, batch_first=True)
            self.depth = torchvision.ops.StochasticDepth(0.5, "row")
            self.head = nn.Linear(6 + 4, 5)

        def forward(self, x):
            n, c, h, w = x.shape
            torch._assert(x.dim() == 4, "an image")
            y = self.conv(x)
            a, b = y.chunk(2, dim=1)                                        # 4x8x8 each
            a = self.depth(a * self.scale) - 0.5 * b + 1.0
            b = 2.0 - b / 4 + torch.unsqueeze(x[:, 0], 1) * 0.25
            pooled = (a + b).mean([2, 3])                                   # [N, 4]
            size = a.size()
            tokens = a[:, :, 2:6].reshape(size[0], size[1], (h // 2) * w).permute(0, 2, 1)  # [N, 32, 4]
            tokens = self.embed(tokens)
            tokens = torch.cat([self.token.expand(n, -1, -1), tokens], dim=1) + self.position
            attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
            return self.head(torch.cat([attended[:, 0], pooled], dim=1))

    return Tokens


def randomize_layernorm(torch, model, generator):
    """Weight and bias away from their defaults (1, 0)."""
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=generator, dtype=m.weight.dtype))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=generator, dtype=m.bias.dtype))


def randomize_batchnorm(torch, model, generator):
    """Running statistics and affine parameters away from their defaults (0, 1, 1, 0)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                m.weight.copy_(0.5 + torch.rand(c, generator=generator))
                m.bias.copy_(0.2 * torch.randn(c, generator=generator))
            m.num_batches_tracked.fill_(7)


# ------------------------------------------------------------------------------------------------
# A small safetensors reader of its own: the container as docs/format.md specifies it


def read_safetensors(path, np):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buffer = data[8 + n:]
    metadata = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    spans = sorted((entry["data_offsets"][0], entry["data_offsets"][1], name) for name, entry in header.items())
    covered, tiled = 0, True
    for begin, end, _ in spans:
        tiled &= begin == covered
        covered = end
    tiled &= covered == len(buffer)
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(buffer[begin:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
        tensors[name] = (entry["dtype"], array)
    return tensors, json.loads(metadata["axiomatic.graph"]), tiled


# ------------------------------------------------------------------------------------------------
# The comparison


class Comparer:
    def __init__(self, torch, np, cli, work):
        self.torch, self.np, self.cli, self.work = torch, np, cli, work
        self.errors = {}

    def compare(self, name, path, model, shape, seed, normalize=None, labels=None):
        """F(x) and dF/dx of the predicted class: the command (f64) against autograd (float64)."""
        torch, np = self.torch, self.np
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand([1] + list(shape), generator=generator, dtype=torch.float64)
        x_path = os.path.join(self.work, f"{name}_x.npy")
        grad_path = os.path.join(self.work, f"{name}_grad.npy")
        np.save(x_path, x[0].numpy())

        reference = exact_reference(torch, model)  # float32 weights widen exactly
        xr = x.clone().requires_grad_(True)
        seen = xr
        if normalize is not None:
            mean = torch.tensor(normalize[0], dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(normalize[1], dtype=torch.float64).view(1, -1, 1, 1)
            seen = (xr - mean) / std
        out = reference(seen).flatten(1)[0]
        target = int(out.argmax())
        (grad,) = torch.autograd.grad(out[target], xr)
        expected_f = out[target].item()
        expected_grad = grad[0].numpy()

        command = [self.cli, "explain", "--model", path, "--input", x_path, "--target", str(target),
                   "--method", "gradient", "--precision", "f64", "--json", "--out", grad_path]
        run = subprocess.run(command, capture_output=True, text=True)
        check(run.returncode == 0, f"{name}: axiomatic explain runs (exit {run.returncode}) {run.stderr.strip()}")
        if run.returncode != 0:
            return
        result = json.loads(run.stdout)
        found_grad = np.load(grad_path)
        f_error = abs(result["f_input"] - expected_f) / max(abs(expected_f), 1e-300)
        grad_error = float(np.abs(found_grad - expected_grad).max() / max(np.abs(expected_grad).max(), 1e-300))
        self.errors[name] = (f_error, grad_error)
        check(found_grad.shape == expected_grad.shape and found_grad.dtype == np.float64,
              f"{name}: gradient of shape {list(found_grad.shape)}, {found_grad.dtype}")
        check(f_error < TOLERANCE, f"{name}: F(x) = {result['f_input']!r} against torch {expected_f!r}, "
                                   f"relative error {f_error:.2e}")
        check(grad_error < TOLERANCE, f"{name}: dF/dx relative error {grad_error:.2e} (max |dF/dx| "
                                      f"{np.abs(expected_grad).max():.3g})")
        if labels is not None:
            check(result.get("label") == labels[target], f"{name}: label {result.get('label')!r} of class {target}")


# ------------------------------------------------------------------------------------------------
# Refusals


def refusals(torch, nn, F, export_torch, work):
    class Broadcast(nn.Module):
        """[N, 1, 2, 8] + [N, 8]: PyTorch aligns the batch with the height (2 at the exporter's
        batch of 2), which would mix samples."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 8)

        def forward(self, x):
            return x + self.fc(x.flatten(1))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x), x

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return 2 / self.conv(x)  # a number times or plus a tensor is an affine node; this is not

    class InPlaceReadAgain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            h = self.conv(x)
            return h + self.relu(h)  # relu overwrites h before the add reads it

    class Attention(nn.Module):
        def __init__(self, **call):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.call = call

        def forward(self, x):
            tokens = x.flatten(1, 2)  # [N, 8, 8]
            return self.attention(tokens, tokens, tokens, **self.call)[0]

    class CrossAttention(Attention):
        def forward(self, x):
            tokens = x.flatten(1, 2)
            return self.attention(tokens, tokens + 1.0, tokens, need_weights=False)[0]

    class Select(nn.Module):
        def forward(self, x):
            return x[0]

    class BatchArithmetic(nn.Module):
        def forward(self, x):
            return x.reshape(x.size(0) * 2, -1)

    class MovesBatch(nn.Module):
        def forward(self, x):
            return x.permute(1, 0, 2, 3)

    class FixedBatch(nn.Module):
        def forward(self, x):
            return x.view(2, -1)

    cases = [
        ("padding='same'", nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), ["module '0' (Conv2d)", "padding='same'"]),
        ("padding_mode", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
         ["module '0' (Conv2d)", "padding_mode='reflect'"]),
        ("divisor_override", nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, divisor_override=3)),
         ["module '1' (AvgPool2d)", "divisor_override"]),
        ("MaxPool2d dilation 2", nn.Sequential(nn.MaxPool2d(2, dilation=2)), ["module '0' (MaxPool2d)", "dilation"]),
        ("broadcasting across ranks", Broadcast(), ["operator.add", "differ in rank"]),
        ("unsupported module", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ELU()), ["module '1' (ELU)", "unsupported"]),
        ("permute moving the batch", MovesBatch(), ["Tensor.permute", "batch dimension"]),
        ("a fixed batch size", FixedBatch(), ["Tensor.view", "fixed batch size"]),
        ("attention returning its weights", Attention(), ["module 'attention' (MultiheadAttention)", "need_weights"]),
        ("cross-attention", CrossAttention(), ["only self-attention"]),
        ("arithmetic on the batch size", BatchArithmetic(), ["batch size"]),
        ("indexing the batch", Select(), ["operator.getitem", "batch dimension"]),
        ("two inputs", TwoInputs(), ["2 inputs (x, y)"]),
        ("two outputs", TwoOutputs(), ["one output"]),
        ("a number divided by a tensor", Constant(), ["operator.truediv", "number divided by a tensor"]),
        ("in-place update read again", InPlaceReadAgain(), ["different function"]),
    ]
    path = os.path.join(work, "refused.safetensors")
    for what, model, words in cases:
        try:
            export_torch.export(model, (1, 2, 8) if what == "broadcasting across ranks" else (1, 8, 8), path)
            message = None
        except export_torch.ExportError as e:
            message = str(e)
        ok = message is not None and "\n" not in message and all(w in message for w in words)
        check(ok, f"refused: {what}: {message}")

    # The command line: one line on stderr, exit status 1.
    run = subprocess.run([sys.executable, EXPORTER, "--torchvision", "swin_t", "--out", path],
                         capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    check(run.returncode == 1 and len(lines) == 1 and "swin_*" in lines[0] and "torch.roll" in lines[0],
          f"refused by the command line: swin_t (exit {run.returncode}): {run.stderr.strip()}")


# ------------------------------------------------------------------------------------------------
# The models' checks


def test_lenet(torch, np, export_torch, comparer, work):
    """(a) LeNet-28 through the command line, rebuilt here from the same seed."""
    lenet_path = os.path.join(work, "lenet.safetensors")
    labels = [f"digit {k}" for k in range(10)]
    labels_path = os.path.join(work, "labels.txt")
    with open(labels_path, "w") as f:
        f.write("\n".join(labels) + "\n")
    run = subprocess.run([sys.executable, EXPORTER, "--lenet", "--seed", "5", "--labels", labels_path,
                          "--out", lenet_path], capture_output=True, text=True)
    check(run.returncode == 0, f"lenet: export_torch.py --lenet (exit {run.returncode}) {run.stderr.strip()}")
    torch.manual_seed(5)
    lenet = export_torch.lenet28()
    tensors, graph, tiled = read_safetensors(lenet_path, np)
    check(tiled, "lenet: the tensors tile the data buffer")
    check(graph["inputs"] == [{"name": "input", "shape": [1, 28, 28], "range": [0.0, 1.0]}],
          f"lenet: graph input {graph['inputs']}")
    check(graph.get("labels") == labels and graph["outputs"] == ["9"], "lenet: labels and output")
    check(all(dtype == "F32" for dtype, _ in tensors.values()), "lenet: tensors are F32")
    check(all(np.array_equal(tensors[k][1], v.numpy()) for k, v in lenet.state_dict().items()),
          "lenet: the file holds the state_dict of the model rebuilt from the seed")
    comparer.compare("lenet", lenet_path, lenet, (1, 28, 28), seed=1, labels=labels)


def test_resnet18(torch, np, torchvision, export_torch, comparer, work):
    """(b) ResNet-18, 10 classes, random BatchNorm statistics, ImageNet normalization in front."""
    torch.manual_seed(2)
    resnet = torchvision.models.resnet18(num_classes=10)
    randomize_batchnorm(torch, resnet, torch.Generator().manual_seed(3))
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    resnet_path = os.path.join(work, "resnet18.safetensors")
    export_torch.export(resnet, (3, 224, 224), resnet_path, input_range=(0, 1), normalize=imagenet)
    tensors, graph, tiled = read_safetensors(resnet_path, np)
    check(tiled, "resnet18: the tensors tile the data buffer")
    check(tensors["layer1.0.bn1.num_batches_tracked"][0] == "I64"
          and tensors["layer1.0.bn1.num_batches_tracked"][1].shape == ()
          and int(tensors["layer1.0.bn1.num_batches_tracked"][1]) == 7,
          "resnet18: num_batches_tracked is an unused I64 scalar")
    check(graph["nodes"][0] == {"name": "normalize", "op": "normalize", "inputs": ["input"],
                                "mean": imagenet[0], "std": imagenet[1]}, "resnet18: normalize node first")
    names = [node["name"] for node in graph["nodes"]]
    check(len(set(names)) == len(names) and "layer1.0.conv1" in names and "layer4.1.relu_1" in names,
          "resnet18: node names are the module paths, unique")
    fresh = torchvision.models.resnet18(num_classes=10)
    fresh.load_state_dict({k: torch.from_numpy(a.copy()) for k, (_, a) in tensors.items()})
    check(all(torch.equal(fresh.state_dict()[k], v) for k, v in resnet.state_dict().items()),
          "resnet18: load_state_dict reads the file back")
    comparer.compare("resnet18", resnet_path, resnet, (3, 224, 224), seed=4, normalize=imagenet)


def test_zoo(torch, nn, F, np, export_torch, comparer, work):
    """(c) Every other op; float64 weights that only F64 holds."""
    Zoo = build_models(torch, nn, F)
    torch.manual_seed(6)
    zoo = Zoo().double()
    generator = torch.Generator().manual_seed(7)
    randomize_batchnorm(torch, zoo, generator)
    with torch.no_grad():
        for p in zoo.parameters():  # values float32 cannot hold: the F64 file must keep them
            p.add_(1e-9 * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    zoo_path = os.path.join(work, "zoo.safetensors")
    graph = export_torch.export(zoo, (3, 12, 8), zoo_path, f64=True)
    tensors, _, tiled = read_safetensors(zoo_path, np)
    check(tiled and tensors["conv.weight"][0] == "F64"
          and np.array_equal(tensors["conv.weight"][1], zoo.conv.weight.detach().numpy()),
          "zoo: F64 tensors hold the float64 weights exactly")
    ops = {node["op"] for node in graph["nodes"]}
    wanted = {"conv2d", "batchnorm2d", "leaky_relu", "sigmoid", "tanh", "maxpool2d", "avgpool2d",
              "adaptive_avgpool2d", "concat", "sub", "mul", "add", "identity", "flatten", "linear", "relu",
              "softmax"}
    check(wanted <= ops, f"zoo: ops {sorted(ops)}")
    comparer.compare("zoo", zoo_path, zoo, (3, 12, 8), seed=8)


def test_zoo_functional(torch, nn, F, export_torch, comparer, work):
    """(c') The zoo's twin: function forms, log_softmax at the end, F32."""
    Zoo = build_models(torch, nn, F)
    torch.manual_seed(9)
    twin = Zoo(functional=True)
    randomize_batchnorm(torch, twin, torch.Generator().manual_seed(10))
    twin_path = os.path.join(work, "zoo_functional.safetensors")
    graph = export_torch.export(twin, (3, 12, 8), twin_path)
    check(graph["nodes"][-1]["op"] == "log_softmax", "zoo_functional: ends in log_softmax")
    comparer.compare("zoo_functional", twin_path, twin, (3, 12, 8), seed=11)


def test_activations(torch, nn, F, np, export_torch, comparer, work):
    """(d) The ops added for the torchvision families, in float64, written as F64."""
    Activations = build_activations(torch, nn, F)
    torch.manual_seed(12)
    model = Activations().double()
    randomize_layernorm(torch, model, torch.Generator().manual_seed(13))
    path = os.path.join(work, "activations.safetensors")
    graph = export_torch.export(model, (3, 8, 8), path, f64=True)
    ops = {node["op"] for node in graph["nodes"]}
    wanted = {"hardtanh", "silu", "hardswish", "hardsigmoid", "gelu", "layer_norm", "permute", "reshape"}
    check(wanted <= ops, f"activations: ops {sorted(ops)}")
    check({node.get("approximate") for node in graph["nodes"] if node["op"] == "gelu"} == {"none", "tanh"},
          "activations: gelu in both forms")
    comparer.compare("activations", path, model, (3, 8, 8), seed=14)


def test_tokens(torch, nn, F, export_torch, comparer, work):
    """(d') Sizes, slices, numbers, constants and attention, in float64, written as F64."""
    Tokens = build_tokens(torch, nn, F)
    torch.manual_seed(21)
    model = Tokens().double()
    path = os.path.join(work, "tokens.safetensors")
    graph = export_torch.export(model, (3, 8, 8), path, f64=True)
    ops = [node["op"] for node in graph["nodes"]]
    wanted = {"slice", "affine", "constant", "matmul", "softmax", "concat", "adaptive_avgpool2d", "permute", "reshape"}
    check(wanted <= set(ops) and ops.count("constant") == 3 and ops.count("matmul") == 2,
          f"tokens: ops {sorted(set(ops))}, 3 constants, 2 matmuls")
    comparer.compare("tokens", path, model, (3, 8, 8), seed=22)


def test_mobilenet_v2(torch, torchvision, export_torch, comparer, work):
    """(e) torchvision's mobilenet_v2 (ReLU6 as hardtanh), 10 classes, random BatchNorm statistics;
    3x32x32 (its strides reach 1x1)."""
    torch.manual_seed(15)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    randomize_batchnorm(torch, model, torch.Generator().manual_seed(16))
    path = os.path.join(work, "mobilenet_v2.safetensors")
    graph = export_torch.export(model, (3, 32, 32), path)
    check(sum(node["op"] == "hardtanh" for node in graph["nodes"]) == 35, "mobilenet_v2: 35 ReLU6 as hardtanh")
    comparer.compare("mobilenet_v2", path, model, (3, 32, 32), seed=17)


def test_mobilenet_v3_small(torch, torchvision, export_torch, comparer, work):
    """(f) torchvision's mobilenet_v3_small: Hardswish, and squeeze-excitation (Hardsigmoid, then a
    broadcasting mul of [C, 1, 1] by [C, H, W]); 10 classes, random BatchNorm statistics, 3x32x32."""
    torch.manual_seed(18)
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    randomize_batchnorm(torch, model, torch.Generator().manual_seed(19))
    path = os.path.join(work, "mobilenet_v3_small.safetensors")
    graph = export_torch.export(model, (3, 32, 32), path)
    ops = [node["op"] for node in graph["nodes"]]
    check(ops.count("hardswish") == 19 and ops.count("hardsigmoid") == 9 and ops.count("mul") == 9,
          "mobilenet_v3_small: 19 hardswish, 9 squeeze-excitations (hardsigmoid, broadcasting mul)")
    comparer.compare("mobilenet_v3_small", path, model, (3, 32, 32), seed=20)


# ------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "cli", "axiomatic"), help="the axiomatic command")
    parser.add_argument("--work", help="folder for the files written (default: a temporary one, removed)")
    args = parser.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
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

    torch.set_num_threads(1)  # small models; the machine is shared
    with tempfile.TemporaryDirectory(prefix="export_torch_test_") as scratch:
        work = args.work or scratch
        os.makedirs(work, exist_ok=True)
        comparer = Comparer(torch, np, args.cli, work)

        sections = [
            ("lenet", lambda: test_lenet(torch, np, export_torch, comparer, work)),
            ("resnet18", lambda: test_resnet18(torch, np, torchvision, export_torch, comparer, work)),
            ("zoo", lambda: test_zoo(torch, nn, F, np, export_torch, comparer, work)),
            ("zoo_functional", lambda: test_zoo_functional(torch, nn, F, export_torch, comparer, work)),
            ("activations", lambda: test_activations(torch, nn, F, np, export_torch, comparer, work)),
            ("tokens", lambda: test_tokens(torch, nn, F, export_torch, comparer, work)),
            ("mobilenet_v2", lambda: test_mobilenet_v2(torch, torchvision, export_torch, comparer, work)),
            ("mobilenet_v3_small", lambda: test_mobilenet_v3_small(torch, torchvision, export_torch, comparer, work)),
            ("refusals", lambda: refusals(torch, nn, F, export_torch, work)),
        ]
        for name, section in sections:
            try:
                section()
            except Exception as e:  # an export that fails is a failed check, and the others still run
                check(False, f"{name}: {type(e).__name__}: {e}")

    print("max relative errors (F(x), dF/dx): " +
          ", ".join(f"{name} {f:.1e} {g:.1e}" for name, (f, g) in comparer.errors.items()))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
