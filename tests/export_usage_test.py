"""Test of tools/export_torch.py as a user meets it: their own module with its preprocessing and
class names, the module's train/eval mode, a model torch.fx cannot trace, and torchvision
constructor arguments on the command line.

  own module   export(model, shape, path, labels=..., normalize=(mean, std), input_range=(0, 1))
               writes a normalize node in front and the labels; `axiomatic info` lists the labels
               compactly and `axiomatic explain` names the target's label;
  modes        export() leaves every submodule in the mode it found it (all train, all eval, mixed,
               and after a refusal), and the BatchNorm running statistics untouched;
  tracing      a forward with data-dependent control flow (in a submodule, and in a helper function
               called by the top module) is refused with one line naming the module, the function
               and its line, and what to do; nothing is written;
  --kwargs     `--torchvision googlenet --kwargs '{"aux_logits": false}'` builds the model without
               its auxiliary classifiers; an unknown argument is refused in one line (exit 1), bad
               JSON is bad usage (exit 2), and nothing is written.

    /usr/bin/python3 tests/export_usage_test.py [--cli build/cli/axiomatic]

Exit status 0 when every check passes, 1 when one fails, 77 (skipped) when torch, torchvision or
numpy cannot be imported.
"""

import argparse
import inspect
import json
import os
import struct
import subprocess
import sys
import tempfile

from script_checks import SKIP, ROOT, EXPORTER, check, finish


def header(path):
    """The safetensors header of a file: {name: {dtype, shape, data_offsets}, "__metadata__": ...}."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def own_module(torch, nn, np, export_torch, cli, work):
    class SmallNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Linear(6 * 4 * 4, 12)

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    torch.manual_seed(1)
    model = SmallNet().eval()
    labels = [f"class {k}" for k in range(12)]
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    path = os.path.join(work, "small.safetensors")
    graph = export_torch.export(model, (3, 8, 8), path, labels=labels, input_range=(0.0, 1.0), normalize=(mean, std))
    check(graph["nodes"][0]["op"] == "normalize" and graph["nodes"][0]["mean"] == mean and graph["labels"] == labels
          and graph["inputs"][0]["range"] == [0.0, 1.0], "own module: a normalize node first, the labels and the range")

    info = subprocess.run([cli, "info", "--model", path], capture_output=True, text=True)
    label_lines = [line for line in info.stdout.splitlines() if line.startswith("labels")]
    check(info.returncode == 0 and len(label_lines) == 1 and "0 class 0" in label_lines[0]
          and "class 11" not in label_lines[0] and "12" in label_lines[0],
          f"own module: info lists the labels compactly: {label_lines}")

    x = np.random.default_rng(0).random((3, 8, 8))
    np.save(os.path.join(work, "x.npy"), x)
    run = subprocess.run([cli, "explain", "--model", path, "--input", os.path.join(work, "x.npy"), "--method", "gradient",
                          "--precision", "f64", "--json"], capture_output=True, text=True)
    report = json.loads(run.stdout) if run.returncode == 0 else {}
    with torch.no_grad():
        m, s = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in (mean, std))
        scores = model.double()((torch.tensor(x).unsqueeze(0) - m) / s)[0]
    expected = int(scores.argmax())
    check(report.get("target") == expected and report.get("label") == labels[expected]
          and abs(report.get("f_input", 0) - float(scores[expected])) <= 1e-12 * abs(float(scores[expected])),
          f"own module: explain on pixel-space input finds PyTorch's class {expected}, its label and F(x): "
          f"{report.get('label')}, {report.get('f_input')!r} vs {float(scores[expected])!r}")


def modes(torch, nn, export_torch, work):
    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 3))

    path = os.path.join(work, "modes.safetensors")
    for what in ("train", "eval", "mixed"):
        model = build()
        model.train(what != "eval")
        if what == "mixed":
            model[2].eval()  # Dropout off, BatchNorm still in training mode
        before = [m.training for m in model.modules()]
        running = model[1].running_mean.clone(), model[1].running_var.clone()
        export_torch.export(model, (1, 8, 8), path)
        after = [m.training for m in model.modules()]
        check(before == after, f"modes: export leaves a {what} model in its modes: {before} -> {after}")
        check(torch.equal(running[0], model[1].running_mean) and torch.equal(running[1], model[1].running_var),
              f"modes: export leaves a {what} model's BatchNorm running statistics as they were")

    refused = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ELU())
    refused.train()
    try:
        export_torch.export(refused, (1, 8, 8), path)
    except export_torch.ExportError:
        pass
    check(all(m.training for m in refused.modules()), "modes: a refused model is left in train mode too")


def tracing(torch, nn, export_torch, work):
    class Gate(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return x
            return -x

    class GatedNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.gate = Gate()

        def forward(self, x):
            return torch.flatten(self.gate(self.conv(x)), 1)

    def halve_until_small(x):
        while x.abs().max() > 1:
            x = x / 2
        return x

    class Halving(nn.Module):
        def forward(self, x):
            return torch.flatten(halve_until_small(x), 1)

    this_file = os.path.basename(__file__)
    gate_line = inspect.getsourcelines(Gate.forward)[1] + 1
    halve_line = inspect.getsourcelines(halve_until_small)[1] + 1
    cases = [
        ("in a submodule", GatedNet(), ["module 'gate' (Gate)", f"forward() at {this_file}:{gate_line}"]),
        ("in a helper function", Halving(), ["the top module (Halving)", f"halve_until_small() at {this_file}:{halve_line}"]),
    ]
    for what, model, words in cases:
        path = os.path.join(work, "untraceable.safetensors")
        try:
            export_torch.export(model, (1, 8, 8), path)
            message = None
        except export_torch.ExportError as e:
            message = str(e)
        ok = (message is not None and "\n" not in message and message.startswith("torch.fx cannot trace the model")
              and "control flow" in message and "torch.where" in message and all(w in message for w in words))
        check(ok, f"tracing: refused {what}: {message}")
        check(not os.path.exists(path), f"tracing: nothing written when refused {what}")


def kwargs(work):
    path = os.path.join(work, "googlenet.safetensors")
    base = [sys.executable, EXPORTER, "--torchvision", "googlenet", "--num-classes", "10", "--input-shape", "3", "64", "64",
            "--out", path]
    run = subprocess.run(base + ["--kwargs", '{"aux_logits": false}'], capture_output=True, text=True)
    names = header(path).keys() if run.returncode == 0 else []
    check(run.returncode == 0 and any(n.startswith("inception5b.") for n in names)
          and not any(n.startswith("aux") for n in names),
          f"--kwargs: googlenet without auxiliary classifiers (exit {run.returncode}): {run.stderr.strip()[-200:]}")
    if os.path.exists(path):
        os.remove(path)

    for arguments, status, says in (('{"no_such_argument": 1}', 1, "no_such_argument"),
                                    ("[1]", 2, "JSON object"), ("{aux_logits: false}", 2, "not JSON")):
        run = subprocess.run(base + ["--kwargs", arguments], capture_output=True, text=True)
        last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
        check(run.returncode == status and says in last and not os.path.exists(path),
              f"--kwargs {arguments}: exit {run.returncode}, {last}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "cli", "axiomatic"), help="the axiomatic command")
    args = parser.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn as nn
        import torchvision  # noqa: F401 (the --kwargs checks build a torchvision model)
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP
    sys.path.insert(0, os.path.dirname(EXPORTER))
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    import export_torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="export_usage_test_") as work:
        sections = [("own module", lambda: own_module(torch, nn, np, export_torch, args.cli, work)),
                    ("modes", lambda: modes(torch, nn, export_torch, work)),
                    ("tracing", lambda: tracing(torch, nn, export_torch, work)),
                    ("kwargs", lambda: kwargs(work))]
        for name, section in sections:
            try:
                section()
            except Exception as e:  # a section that fails is a failed check, and the others still run
                check(False, f"{name}: {type(e).__name__}: {e}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
