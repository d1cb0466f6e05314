"""What the Python test scripts share: where things are, ctest's skip status, check(), and the
exact-slope float64 reference of a PyTorch model (exact_reference).

Each script is run by ctest as `python3 tests/NAME_test.py ...`, so this folder is on sys.path
and `from script_checks import ...` finds this file. check() prints one line a check, "ok" or
"FAIL", and keeps the failures; a script ends with `return finish()`, which prints their count
and gives the exit status.
"""

import copy
import os
import time

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests: a dependency is missing
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "tools", "export_torch.py")

failures = []
_start = time.perf_counter()


def check(condition, message):
    print(("ok    " if condition else "FAIL  ") + message, flush=True)
    if not condition:
        failures.append(message)


def finish():
    """Prints how many checks failed and the seconds taken; the exit status (1 if any failed)."""
    print(f"{len(failures)} failed, {time.perf_counter() - _start:.1f} s")
    return 1 if failures else 0


def exact_reference(torch, model):
    """A float64 copy of `model` whose hardsigmoids are hardtanh(x + 3, 0, 6) / 6: the same values,
    but exact slopes. PyTorch's own hardsigmoid backward multiplies by the float32 constant 1/6
    even in float64 (0.1666666716..., a relative error of 3e-8), which the 1e-10 comparison sees."""
    nn, F = torch.nn, torch.nn.functional

    class ExactHardsigmoid(nn.Module):
        def forward(self, x):
            return F.hardtanh(x + 3, 0.0, 6.0) / 6

    reference = copy.deepcopy(model).double().eval()
    for parent in list(reference.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Hardsigmoid):
                setattr(parent, name, ExactHardsigmoid())
        if getattr(parent, "hardsigmoid_fn", None) is F.hardsigmoid:
            parent.hardsigmoid_fn = lambda x: F.hardtanh(x + 3, 0.0, 6.0) / 6
    return reference
