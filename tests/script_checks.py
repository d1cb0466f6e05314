"""What the Python test scripts share: where things are, ctest's skip status, and check().

Each script is run by ctest as `python3 tests/NAME_test.py ...`, so this folder is on sys.path
and `from script_checks import ...` finds this file. check() prints one line a check, "ok" or
"FAIL", and keeps the failures; a script ends with `return finish()`, which prints their count
and gives the exit status.
"""

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
