"""Evaluates SPT on the test pairs: IS, mask-IS, SSIM, mask-SSIM, FID, LPIPS, L1, mIoU, PCKh.

`python evaluate.py --config=configs/spt.py:synthetic --workdir=runs/demo/train`
(latest joint / appearance checkpoint) or `--saved_model=runs/demo/export/1
--out_dir=runs/demo/eval`. Writes OUT_DIR/results.json, results.md (the table,
with the "copy the source image" / "copy the source parsing" baselines) and
samples_NN.png; OUT_DIR defaults to WORKDIR/eval. Inception weights come from
`--config.eval.inception_weights` ("imagenet" or a file), LPIPS weights from
`--config.eval.lpips_weights` (a file, docs/lpips.md); see docs/evaluation.md.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from spt_tf import memory

# Before TensorFlow starts: oneDNN's pool allocator would keep every batch's
# high-water mark and grow over a long run, and glibc malloc, which then serves
# oneDNN's buffers, would keep freed ones in per-thread arenas (spt_tf/memory.py).
memory.use_system_allocator_for_onednn()
memory.limit_malloc_retention()

from spt_tf.evaluation import evaluator, inception, lpips  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/spt.py:synthetic", "Config file (and argument).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Training workdir: evaluates its latest joint / appearance checkpoint.")
flags.DEFINE_string("checkpoint", None, "Explicit checkpoint path (instead of the workdir's latest).")
flags.DEFINE_string("saved_model", None, "SavedModel version directory (or export base: newest version).")
flags.DEFINE_enum("split", "test", ["test", "train"], "Pairs to evaluate: data.pairs_test or data.pairs_train.")
flags.DEFINE_integer("max_pairs", None, "Evaluate the first N pairs (default config.eval.max_pairs; 0 = all).")
flags.DEFINE_string("out_dir", None, "Output directory (default WORKDIR/eval).")
flags.DEFINE_bool(
    "allow_random_weights",
    False,
    "Compute IS / FID / LPIPS with random Inception / AlexNet weights when "
    "config.eval.inception_weights / lpips_weights is empty (smoke tests; every output is marked).",
)
flags.DEFINE_bool("skip_inception", False, "Leave IS, mask-IS and FID out (no Inception network).")
flags.DEFINE_bool("skip_lpips", False, "Leave LPIPS out (no AlexNet; config.eval.lpips_weights unused).")
flags.DEFINE_string("fid_cache_dir", None, "Cache of the real FID statistics (default: parent of --out_dir).")
flags.DEFINE_integer("num_samples", 16, "Rows of sample grids to write (8 per PNG).")
flags.DEFINE_string(
    "parser_workdir",
    None,
    "Workdir whose human parser (--stage=parser) judges the generated images (parser mIoU); default --workdir.",
)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.saved_model and (FLAGS.workdir or FLAGS.checkpoint):
        raise app.UsageError("give --saved_model or --workdir / --checkpoint, not both")
    if not (FLAGS.saved_model or FLAGS.workdir or FLAGS.checkpoint):
        raise app.UsageError("give --workdir, --checkpoint or --saved_model")
    out_dir = FLAGS.out_dir or (os.path.join(FLAGS.workdir, "eval") if FLAGS.workdir else None)
    if not out_dir:
        raise app.UsageError("give --out_dir (no --workdir to default to)")
    config = _CONFIG.value
    max_pairs = config.eval.max_pairs if FLAGS.max_pairs is None else FLAGS.max_pairs
    try:
        evaluator.run(
            config,
            FLAGS.workdir,
            out_dir,
            saved_model=FLAGS.saved_model,
            checkpoint=FLAGS.checkpoint,
            max_pairs=max_pairs,
            allow_random_weights=FLAGS.allow_random_weights,
            split=FLAGS.split,
            skip_inception=FLAGS.skip_inception,
            skip_lpips=FLAGS.skip_lpips,
            fid_cache_dir=FLAGS.fid_cache_dir,
            num_samples=FLAGS.num_samples,
            parser_workdir=FLAGS.parser_workdir,
        )
    except (inception.InceptionWeightsError, lpips.LPIPSWeightsError, evaluator.IncompleteCheckpointError) as e:
        sys.exit(f"evaluate.py: {type(e).__name__}: {e}")
    print(os.path.join(out_dir, "results.md"))


if __name__ == "__main__":
    app.run(main)
