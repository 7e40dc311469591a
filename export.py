"""Exports trained H_S + H_A as a SavedModel version for TF Serving.

`python export.py --config=configs/spt.py:synthetic --workdir=runs/demo/train --export_dir=runs/demo/export`
writes `EXPORT_DIR/<N>/` atomically (N = next integer unless --version).
"""

from absl import app, flags
from ml_collections import config_flags

from spt_tf.export import module

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/spt.py:synthetic", "Config file (and argument).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Training workdir (latest joint / appearance checkpoint).")
flags.DEFINE_string("checkpoint", None, "Explicit checkpoint path (overrides --workdir).")
flags.DEFINE_string("export_dir", None, "Base export directory.")
flags.DEFINE_integer("version", None, "Version number (default: next integer).")
flags.mark_flag_as_required("export_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir and not FLAGS.checkpoint:
        raise app.UsageError("give --workdir or --checkpoint")
    path = module.export(_CONFIG.value, FLAGS.workdir, FLAGS.export_dir, FLAGS.checkpoint, FLAGS.version)
    print(path)


if __name__ == "__main__":
    app.run(main)
