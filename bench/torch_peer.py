"""The PyTorch side of bench_networks: the same workloads, timed the same way, in plain eager
PyTorch (Debian's python3-torch and python3-torchvision), float32, 2 threads by default.

Workloads (the input gradient is always torch.autograd.grad of the summed target logit, class 3):
  fwdgrad <model> <batch>                 forward + input gradient of a batch of random inputs
  ig <model> <rule> <steps> <batch>       Integrated Gradients from a zero baseline, Captum's
                                          algorithm: points on the straight-line path evaluated
                                          `batch` at a time, each batch's input gradient weighted
                                          by the rule's weights and summed, times (x - baseline)
  <model> is lenet28 (the peer's LeNet-28, as nn::lenet28) or resnet18 (torchvision's, 3x224x224,
  as nn::resnet18), or file:NAME:PATH, torchvision's NAME with the weights of the model file PATH
  that tools/export_torch.py --torchvision NAME wrote (the file holds the whole state_dict), at
  the file's input shape; <rule> is riemann_middle or gausslegendre (Captum's nodes and weights).

Every workload prints one JSON line: {"name", "median_ms", "min_ms", "runs", "times_ms"}.

  /usr/bin/python3 bench/torch_peer.py [--threads 2] [--reps N]        every workload, N runs each
  /usr/bin/python3 bench/torch_peer.py --serve                          one request per stdin line:
        "<workload words> <runs>" -> one JSON line; a workload's first request first runs it
        untimed, once and then again until 0.3 s have passed (at most 20 times). bench_networks drives this mode to interleave its runs with ours.
  /usr/bin/python3 bench/torch_peer.py --memory                         one ResNet-18 IG-50 (batch
        10) in a fresh process; prints {"name": "memory", "maxrss_mib": ...}

Parameters do not require gradients (as in an attribution, and as in axiomatic's tape); the
models are in eval mode, so batch norm uses its running statistics, as nn::resnet18 does.
"""
import argparse, json, resource, struct, sys, time

import torch
import torch.nn as nn
import torchvision

TARGET = 3


def lenet28():
    # the peer's LeNet-28, the same network as nn::lenet28
    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def resnet18():
    return torchvision.models.resnet18(num_classes=1000)


MODELS = {"lenet28": (lenet28, (1, 28, 28)), "resnet18": (resnet18, (3, 224, 224))}
_built = {}


def read_model_file(path):
    """The tensors of a model file (a safetensors file: docs/format.md) as a state_dict, and
    the input's per-sample shape from its graph."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    graph = json.loads(header.pop("__metadata__")["axiomatic.graph"])
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
    state = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        state[name] = torch.frombuffer(raw, dtype=dtypes[entry["dtype"]]).reshape(entry["shape"]).clone()
    return state, tuple(graph["inputs"][0]["shape"])


def file_model(words):
    # file:NAME:PATH -> torchvision's NAME loaded with the file's weights
    _, name, path = words.split(":", 2)
    state, shape = read_model_file(path)
    m = getattr(torchvision.models, name)(weights=None, num_classes=1000)
    m.load_state_dict({k: v.to(m.state_dict()[k].dtype) for k, v in state.items()})
    return (lambda: m), shape


def model(name):
    if name not in _built:
        make, shape = file_model(name) if name.startswith("file:") else MODELS[name]
        m = make().eval()
        for p in m.parameters():
            p.requires_grad_(False)
        _built[name] = (m, shape)
    return _built[name]


def quadrature(rule, steps):
    if rule == "riemann_middle":
        return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps, torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if rule == "gausslegendre":
        import numpy
        t, w = numpy.polynomial.legendre.leggauss(steps)
        return torch.from_numpy((t + 1) / 2), torch.from_numpy(w / 2)
    raise ValueError("unknown rule " + rule)


def fwdgrad_workload(name, batch):
    m, shape = model(name)
    g = torch.Generator().manual_seed(1)
    x = torch.rand((batch,) + shape, generator=g)

    def run():
        xg = x.clone().requires_grad_(True)
        out = m(xg)[:, TARGET].sum()
        (grad,) = torch.autograd.grad(out, xg)
        return grad
    return run


def ig(m, x, baseline, steps, batch, alphas, weights):
    # Captum's IG loop: a batch of path points, one input gradient, weighted by the rule
    alphas = alphas.to(x.dtype)
    weights = weights.to(x.dtype)
    total = torch.zeros_like(x)
    for s in range(0, steps, batch):
        a = alphas[s:s + batch].view(-1, 1, 1, 1)
        path = (baseline + a * (x - baseline)).requires_grad_(True)
        out = m(path)[:, TARGET].sum()
        (g,) = torch.autograd.grad(out, path)
        total += (g * weights[s:s + batch].view(-1, 1, 1, 1)).sum(0, keepdim=True)
    return (x - baseline) * total


def ig_workload(name, rule, steps, batch):
    m, shape = model(name)
    g = torch.Generator().manual_seed(2)
    x = torch.rand((1,) + shape, generator=g)
    b = torch.zeros_like(x)
    alphas, weights = quadrature(rule, steps)
    return lambda: ig(m, x, b, steps, batch, alphas, weights)


def workload(words):
    kind = words[0]
    if kind == "fwdgrad":
        return fwdgrad_workload(words[1], int(words[2]))
    if kind == "ig":
        return ig_workload(words[1], words[2], int(words[3]), int(words[4]))
    raise ValueError("unknown workload " + " ".join(words))


_seen = {}


def measure(words, runs):
    key = " ".join(words)
    if key not in _seen:
        _seen[key] = workload(words)
        # warm-up (allocator, oneDNN primitives, threads, pages freed by the previous workload):
        # once, then again until 0.3 s have passed, at most 20 times
        t0, n = time.perf_counter(), 0
        while n == 0 or (n < 20 and time.perf_counter() - t0 < 0.3):
            _seen[key]()
            n += 1
    run = _seen[key]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    s = sorted(times)
    return {"name": key, "median_ms": s[len(s) // 2], "min_ms": s[0], "runs": runs, "times_ms": times}


ALL = [["fwdgrad", "lenet28", "1"], ["fwdgrad", "lenet28", "10"], ["fwdgrad", "lenet28", "50"],
       ["fwdgrad", "resnet18", "1"], ["fwdgrad", "resnet18", "10"], ["fwdgrad", "resnet18", "50"],
       ["ig", "lenet28", "riemann_middle", "50", "50"], ["ig", "lenet28", "gausslegendre", "50", "50"],
       ["ig", "resnet18", "riemann_middle", "50", "10"], ["ig", "resnet18", "gausslegendre", "50", "10"]]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--serve", action="store_true")
    p.add_argument("--memory", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.memory:
        ig_workload("resnet18", "riemann_middle", 50, 10)()
        maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"name": "memory", "maxrss_mib": maxrss_kib / 1024.0}), flush=True)
        return
    if a.serve:
        print(json.dumps({"name": "ready", "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            try:
                print(json.dumps(measure(words[:-1], int(words[-1]))), flush=True)
            except Exception as e:  # report, keep serving
                print(json.dumps({"name": " ".join(words[:-1]), "error": str(e)}), flush=True)
        return
    for words in ALL:
        runs = a.reps if not (words[1] == "resnet18" and words[-1] == "50") else max(1, a.reps // 2)
        print(json.dumps(measure(words, runs)), flush=True)


if __name__ == "__main__":
    main()
