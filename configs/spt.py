"""Selects a config by argument: `--config=configs/spt.py:DATASET[,ABLATION]`.

DATASET is one of synthetic (the demo), synthetic_quality (the demo's networks with the
quality run's schedule), market, deepfashion (256x256, the paper),
deepfashion176 (256x176, the field's later protocol), testing; ABLATION one of
e2e (default, SPT), ts_pred, ts_gt, baseline (the paper, Sec. 4.3 and Table 1).
"""

import importlib

ABLATIONS = ("e2e", "ts_pred", "ts_gt", "baseline")
DATASETS = ("synthetic", "synthetic_quality", "market", "deepfashion", "deepfashion176", "testing")


def get_config(arg: str = "synthetic"):
    parts = [p.strip() for p in (arg or "synthetic").split(",") if p.strip()]
    if not parts or len(parts) > 2:
        raise ValueError(f"config argument must be DATASET[,ABLATION], got {arg!r}")
    dataset = parts[0]
    ablation = parts[1] if len(parts) > 1 else "e2e"
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} in config argument; choose from {DATASETS}")
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r} in config argument; choose from {ABLATIONS}")
    c = importlib.import_module(f"configs.{dataset}").get_config()
    c.train.ablation = ablation
    if ablation == "baseline":
        # No parsing: body-part mask style loss instead of the semantic one.
        c.loss.style = "mask"
    return c
