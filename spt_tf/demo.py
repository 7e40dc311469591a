"""`make demo`: the main job on the bundled synthetic data (grows with the project)."""

from absl import app, flags

flags.DEFINE_string("workdir", "runs/demo", "Output folder.")
flags.DEFINE_string(
    "poses_from",
    None,
    "A real annotation CSV: the synthetic people take its poses (docs/data.md, 'Synthetic people in real poses').",
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from spt_tf.demo_run import run

    run(FLAGS.workdir, poses_from=FLAGS.poses_from)


if __name__ == "__main__":
    app.run(main)
