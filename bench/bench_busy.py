"""IG-50 on a machine another process keeps busy: ours (the `axiomatic` command) and PyTorch's
(bench/torch_peer.py's IG loop), in the same run, on 1 thread and on 2.

  /usr/bin/python3 bench/bench_busy.py [--build build] [--runs 3] [--models lenet28,resnet18_64] [--idle]

For the duration of each measurement a child process spins on one core (a Python busy loop),
as another user's job would. Ours runs three ways: as a user runs it, waiting passively between
parallel regions (the command sets OMP_WAIT_POLICY=passive unless the user set a policy);
with GOMP_SPINCOUNT=300000, libgomp's own default when no policy is set (threads spin 300000
times at a barrier before they sleep: what the command did before); and with
OMP_WAIT_POLICY=active (threads only spin). The
figure is the median of --runs runs of the attribution's own time (the "seconds" of --json;
PyTorch: the IG loop), after one warm-up run. --idle measures without the busy child too.
Models: LeNet-28 (1x28x28, tools/export_torch.py --lenet) and ResNet-18 at 3x64x64 (random
weights), IG-50 Gauss-Legendre from a zero baseline, batches of 10 points for PyTorch (ours:
its memory budget's chunk). Prints one JSON line per measurement; never fails.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import numpy
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import export_torch  # noqa: E402
import torch_peer  # noqa: E402

MODELS = {"lenet28": (export_torch.lenet28, (1, 28, 28)),
          "resnet18_64": (lambda: torchvision.models.resnet18(num_classes=1000), (3, 64, 64))}


class Busy:
    """A child spinning on a core while the block runs (None: no child)."""

    def __init__(self, busy):
        self.busy = busy

    def __enter__(self):
        self.child = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if self.busy else None
        time.sleep(0.2)

    def __exit__(self, *exc):
        if self.child:
            self.child.kill()
            self.child.wait()


def ours(cli, model, x, threads, policy, runs):
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)  # "passive": the command's own choice
    if policy == "active":
        env["OMP_WAIT_POLICY"] = "active"
    elif policy == "spin":
        env["GOMP_SPINCOUNT"] = "300000"
    argv = [cli, "explain", "--model", model, "--input", x, "--steps", "50", "--target", "3", "--json",
            "--threads", str(threads)]
    seconds = []
    for r in range(runs + 1):
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        if out.returncode:
            return out.stderr.strip()
        if r:
            seconds.append(json.loads(out.stdout)["seconds"])
    return statistics.median(seconds)


def theirs(model, x, threads, runs):
    torch.set_num_threads(threads)
    alphas, weights = torch_peer.quadrature("gausslegendre", 50)
    seconds = []
    for r in range(runs + 1):
        t0 = time.perf_counter()
        torch_peer.ig(model, x, torch.zeros_like(x), 50, 10, alphas, weights)
        if r:
            seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--models", default="lenet28,resnet18_64")
    p.add_argument("--idle", action="store_true")
    a = p.parse_args()
    cli = os.path.join(a.build, "cli", "axiomatic")
    print(json.dumps({"cores": len(os.sched_getaffinity(0)), "torch_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)")}))
    with tempfile.TemporaryDirectory() as folder:
        for name in a.models.split(","):
            make, shape = MODELS[name]
            torch.manual_seed(0)
            model = make().eval()
            for q in model.parameters():
                q.requires_grad_(False)
            path = os.path.join(folder, name + ".safetensors")
            export_torch.export(model, shape, path, check=False)
            x = torch.rand((1,) + shape, generator=torch.Generator().manual_seed(2))
            x_path = os.path.join(folder, name + "_x.npy")
            numpy.save(x_path, x[0].numpy())
            for busy in ([True, False] if a.idle else [True]):
                for threads in (1, 2):
                    with Busy(busy):
                        line = {"model": name, "busy": busy, "threads": threads,
                                "ours_passive_s": ours(cli, path, x_path, threads, "passive", a.runs),
                                "ours_spin300k_s": ours(cli, path, x_path, threads, "spin", a.runs),
                                "ours_active_s": ours(cli, path, x_path, threads, "active", a.runs),
                                "torch_s": theirs(model, x, threads, a.runs)}
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
