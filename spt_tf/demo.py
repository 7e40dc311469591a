"""`make demo`: the main job on the bundled synthetic data (grows with the project)."""

from absl import app, flags

flags.DEFINE_string("workdir", "runs/demo", "Output folder.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from spt_tf.demo_run import run

    run(FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
