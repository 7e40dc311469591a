"""The quality run's schedule on the bundled synthetic people (`bench/bench_quality.py`).

The demo's networks and offline recipe (configs/synthetic.py), with the ablation study's
schedule: every variant gets the same number of H_A updates, E2E split into its
appearance and joint stages, evaluated on the first `eval.max_pairs` held-out pairs
(the same pairs for every variant). It reuses a finished demo's data, pose detector,
H_S and human parser (`--demo_dir`), so the networks must match the demo's exactly.
"""

from configs import synthetic


def get_config():
    c = synthetic.get_config()
    # E2E: 450 appearance + 150 joint steps; TS-Pred, TS-GT and the Baseline: 600 appearance
    # steps (bench/bench_quality.py adds the two for them).
    c.train.appearance_steps = 450
    c.train.joint_steps = 150
    # 30 held-out identities x 30 ordered pairs each.
    c.eval.max_pairs = 900
    return c
