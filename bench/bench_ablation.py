"""The paper's ablations (SPT.md section 9) on the synthetic people, after `make demo`.

Each ablation trains H_A for ``--steps`` updates from the demo's pose detector and
H_S checkpoints (copied into its own workdir), then is evaluated on the demo's
held-out test pairs; E2E is the demo itself (its joint checkpoint: appearance +
joint steps), so pass ``--steps`` = appearance + joint steps of the demo config
for an equal number of H_A updates. Prints a markdown table from each
``eval/results.json``.

  python bench/bench_ablation.py --demo_dir runs/demo --steps 700
  python bench/bench_ablation.py --demo_dir runs/demo --steps 5000 --e2e_workdir runs/e2e_long

Each variant is two plain commands (printed as it runs), e.g.::

  python train.py --config=configs/spt.py:synthetic,ts_pred --workdir=W --stage=appearance \\
      --config.data.root=runs/demo/data --config.train.appearance_steps=700
  python evaluate.py --config=configs/spt.py:synthetic,ts_pred --workdir=W --skip_inception \\
      --config.data.root=runs/demo/data
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ("ssim", "mask_ssim", "l1", "miou", "pixel_accuracy")


def _run(cmd: list[str], log: str) -> None:
    print("$ " + " ".join(cmd), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode:
        sys.exit(f"failed (exit {p.returncode}); see {log}")


def _row(results_json: str) -> dict:
    with open(results_json) as f:
        r = json.load(f)
    return r["rows"]["model"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo_dir", default="runs/demo", help="a finished `make demo` workdir")
    p.add_argument("--steps", type=int, default=700, help="H_A updates per ablation")
    p.add_argument("--ablations", default="ts_pred,baseline,ts_gt")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--e2e_workdir", default=None, help="E2E train dir (default DEMO_DIR/train)")
    a = p.parse_args(argv)
    data = os.path.join(a.demo_dir, "data")
    demo_train = os.path.join(a.demo_dir, "train")
    for need in ("pose_detector", "semantic"):
        if not os.path.isdir(os.path.join(demo_train, need)):
            sys.exit(f"{demo_train}/{need}: missing; run `make demo` first (or pass --demo_dir)")
    py = sys.executable
    rows = {}
    os.makedirs(a.out, exist_ok=True)
    # E2E: the demo's own evaluation (DEMO_DIR/eval), else evaluate the given workdir.
    e2e_json = os.path.join(a.demo_dir, "eval", "results.json")
    if a.e2e_workdir or not os.path.exists(e2e_json):
        e2e = a.e2e_workdir or demo_train
        e2e_json = os.path.join(e2e, "eval", "results.json")
        _run([py, "evaluate.py", "--config=configs/spt.py:synthetic", f"--workdir={e2e}",
              "--skip_inception", f"--config.data.root={data}"], os.path.join(a.out, "e2e.eval.log"))  # fmt: skip
    for abl in a.ablations.split(","):
        wd = os.path.join(a.out, abl, "train")
        shutil.rmtree(os.path.join(a.out, abl), ignore_errors=True)
        os.makedirs(wd)
        for stage in ("pose_detector", "semantic"):
            shutil.copytree(os.path.join(demo_train, stage), os.path.join(wd, stage))
        t0 = time.time()
        cfg = f"--config=configs/spt.py:synthetic,{abl}"
        _run([py, "train.py", cfg, f"--workdir={wd}", "--stage=appearance", f"--config.data.root={data}",
              f"--config.train.appearance_steps={a.steps}"], os.path.join(a.out, f"{abl}.train.log"))  # fmt: skip
        _run([py, "evaluate.py", cfg, f"--workdir={wd}", "--skip_inception", f"--config.data.root={data}"],
             os.path.join(a.out, f"{abl}.eval.log"))  # fmt: skip
        rows[abl] = (_row(os.path.join(wd, "eval", "results.json")), time.time() - t0)
    rows["e2e"] = (_row(e2e_json), None)
    print("\n| ablation | " + " | ".join(METRICS) + " | train + eval s |")
    print("|---|" + "---:|" * (len(METRICS) + 1))
    for name, (r, secs) in rows.items():
        cells = [("–" if r.get(m) is None else f"{r[m]:.4f}") for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + f" | {'' if secs is None else f'{secs:.0f}'} |")


if __name__ == "__main__":
    main()
