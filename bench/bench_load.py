"""Loading a model file, against reading its bytes and against torch.load of the same weights.

  /usr/bin/python3 bench/bench_load.py --make DIR [--torchvision vgg11_bn]   writes DIR/NAME.safetensors
        (tools/export_torch.py, random weights) and DIR/NAME.pt (the same weights, torch.save of
        the state dict); about 530 MB each for VGG-11-BN: keep them out of the repository
  /usr/bin/python3 bench/bench_load.py DIR/NAME.safetensors [--pt DIR/NAME.pt] [--build build] [--runs 5]

Prints one line per figure: `cat FILE > /dev/null` (the bytes read, warm), bench_load's modes
(read, check, load, loadcopy, load64, info: see bench/bench_load.cpp), `axiomatic info` as a user runs it
(wall time and peak resident memory of the whole process), and torch.load of the .pt. Every
figure is the median of --runs runs after a warm-up run; the resident memory is each process's
peak (wait4). Prints figures, never fails.
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_process(argv, runs):
    """Median wall seconds and the largest peak RSS (MiB) of `argv` run `runs` times, after one warm-up."""
    times, rss = [], 0.0
    for r in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if r:
            times.append(time.perf_counter() - t0)
            rss = max(rss, usage.ru_maxrss / 1024)
        if status:
            return None, None
    return statistics.median(times), rss


TORCH_LOAD = """
import resource, sys, time, torch
t0 = time.perf_counter()
state = torch.load(sys.argv[1], map_location="cpu")
seconds = time.perf_counter() - t0
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def torch_load(pt, runs):
    times, rss = [], []
    for r in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", TORCH_LOAD, pt], capture_output=True, text=True)
        if out.returncode:
            return None
        seconds, peak = (float(v) for v in out.stdout.split())
        if r:
            times.append(seconds)
            rss.append(peak)
    base = subprocess.run([sys.executable, "-c", "import resource, torch; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                          capture_output=True, text=True)
    return statistics.median(times), max(rss), float(base.stdout) if base.returncode == 0 else 0.0


def make(folder, name):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import export_torch
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    model = export_torch.torchvision_model(name).eval()
    export_torch.export(model, (3, 224, 224), os.path.join(folder, name + ".safetensors"), check=False)
    torch.save(model.state_dict(), os.path.join(folder, name + ".pt"))
    print("wrote", os.path.join(folder, name + ".safetensors"), "and", name + ".pt")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--pt")
    p.add_argument("--make")
    p.add_argument("--torchvision", default="vgg11_bn")
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    if a.make:
        make(a.make, a.torchvision)
        return
    if not a.model:
        p.error("give a model file, or --make DIR")
    size = os.path.getsize(a.model) / 2**20
    print(f"# {a.model}: {size:.0f} MiB")
    seconds, rss = timed_process(["sh", "-c", f"cat '{a.model}' > /dev/null"], a.runs)
    print(json.dumps({"what": "cat > /dev/null", "median_s": round(seconds, 4)}))
    bench = os.path.join(a.build, "bench", "bench_load")
    if os.path.exists(bench):
        out = subprocess.run([bench, a.model, "all", str(a.runs)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                print(json.dumps({"what": "bench_load " + j["mode"], "median_s": j["median_s"], "maxrss_mib": j["maxrss_mib"]}))
    cli = os.path.join(a.build, "cli", "axiomatic")
    if os.path.exists(cli):
        seconds, rss = timed_process([cli, "info", "--model", a.model], a.runs)
        if seconds is not None:
            print(json.dumps({"what": "axiomatic info", "median_s": round(seconds, 4), "maxrss_mib": round(rss, 1)}))
    if a.pt:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("# no PyTorch: torch.load not measured")
            return
        got = torch_load(a.pt, a.runs)
        if got:
            seconds, rss, base = got
            print(json.dumps({"what": "torch.load", "median_s": round(seconds, 4), "maxrss_mib": round(rss, 1),
                              "maxrss_of_import_torch_mib": round(base, 1)}))


if __name__ == "__main__":
    main()
