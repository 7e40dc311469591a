"""Runs every benchmark under bench/ in turn (`make bench`); figures go to docs/benchmarks.md by hand."""

import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
failed = []
for script in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
    print(f"== {os.path.basename(script)}", flush=True)
    if subprocess.call([sys.executable, script], cwd=os.path.dirname(here)) != 0:
        failed.append(script)
if failed:
    sys.exit(f"benchmarks failed: {failed}")
