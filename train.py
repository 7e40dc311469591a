"""Trains SPT: `python train.py --config=configs/spt.py:synthetic --workdir=runs/x --stage=all`.

Stages (Algorithm 1): pose_detector, semantic (H_S on pseudo pairs), appearance
(H_A with H_S frozen), joint (end to end), or all of them in order. `parser`
trains the human parser for custom photos on its own (not part of Algorithm 1:
`all` does not run it). Any config field can be overridden:
`--config.train.batch_size=8`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from spt_tf import evaluation
from spt_tf.training import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/spt.py:synthetic", "Config file (and argument).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Output directory (checkpoints, TensorBoard, resolved config).")
flags.DEFINE_enum(
    "stage",
    "all",
    list(loop.ALL_STAGES) + ["all"],
    "Stage of Algorithm 1 to run, all of them, or parser (the human parser, apart).",
)
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    try:
        summaries = loop.run(config, FLAGS.workdir, FLAGS.stage, validators=evaluation.stage_validators())
    except loop.Interrupted as e:
        # Preemption is not a failure: the checkpoint is written, a rerun resumes.
        logging.warning("%s; rerun the same command to resume", e)
        return
    for s in summaries:
        logging.info(
            "stage %s: steps %d -> %d, %.1f examples/s, losses %s",
            s["stage"],
            s["start_step"],
            s["final_step"],
            s.get("examples_per_second", 0.0),
            s["losses"],
        )


if __name__ == "__main__":
    app.run(main)
