"""``python -m spt_tf.data.pseudo_pairs``: the command line of :mod:`.cli`."""

from absl import app

from spt_tf.data.pseudo_pairs import cli

if __name__ == "__main__":
    app.run(cli.app_main, flags_parser=cli.parse_flags)
