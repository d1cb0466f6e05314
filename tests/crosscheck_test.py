"""Test of tools/crosscheck.py on a user's own module (tests/crosscheck_model.py): it exports the
model, runs the command, and exits 0 with every difference within its tolerance; with a tolerance
of 0 for float32 it exits 1 and says which difference is beyond it; a file without the named
function is refused in one line (exit 1).

    /usr/bin/python3 tests/crosscheck_test.py --cli build/cli/axiomatic

Exit status 0 when every check passes, 1 when one fails, 77 (skipped) when torch or numpy cannot
be imported.
"""

import argparse
import os
import subprocess
import sys

from script_checks import SKIP, ROOT, check, finish

CROSSCHECK = os.path.join(ROOT, "tools", "crosscheck.py")
MODEL = os.path.join(ROOT, "tests", "crosscheck_model.py")


def crosscheck(cli, *extra):
    command = [sys.executable, "-B", CROSSCHECK, "--file", MODEL, "--function", "build", "--input-shape", "3", "16", "16",
               "--cli", cli] + list(extra)
    run = subprocess.run(command, capture_output=True, text=True)
    print(run.stdout + run.stderr, end="")
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=os.path.join(ROOT, "build", "cli", "axiomatic"), help="the axiomatic command")
    args = parser.parse_args()
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP

    run = crosscheck(args.cli)
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("  ") and line.split()[0] in ("F(x)", "gradient", "IG")]
    check(run.returncode == 0 and len(rows) == 4 and all("ok" in row for row in rows) and not run.stderr.strip(),
          f"crosscheck agrees on the user's module (exit {run.returncode}, {len(rows)} rows)")
    differences = {f"{row[0]} {row[1]}": float(row[2]) for row in rows}
    check(differences.get("gradient f64", 1) <= 1e-10 and differences.get("IG f64", 1) <= 1e-10
          and 0 < differences.get("IG f32", 0) <= 1e-4, f"the differences printed are within the tolerances: {differences}")

    strict = crosscheck(args.cli, "--tolerance-f32", "0")
    lines = strict.stderr.strip().splitlines()
    check(strict.returncode == 1 and len(lines) == 1 and "beyond the tolerance: IG f32" in lines[0],
          f"a difference beyond its tolerance exits 1 and names it (exit {strict.returncode}): {strict.stderr.strip()}")

    missing = subprocess.run([sys.executable, "-B", CROSSCHECK, "--file", MODEL, "--function", "no_such", "--input-shape",
                              "3", "16", "16", "--cli", args.cli], capture_output=True, text=True)
    lines = missing.stderr.strip().splitlines()
    check(missing.returncode == 1 and len(lines) == 1 and "no function 'no_such'" in lines[0],
          f"a missing function is refused in one line (exit {missing.returncode}): {missing.stderr.strip()}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
