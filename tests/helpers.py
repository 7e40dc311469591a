"""Helpers shared by several test modules (fixtures live in tests/conftest.py)."""

import argparse
import os


def make_people(root: str, *, identities: int, poses: int, height: int, width: int, seed: int,
                test_fraction: float, pair_shift: int) -> str:  # fmt: skip
    """A synthetic people set under ``root`` with a pseudo-pairs file pairing each training image
    with the one ``pair_shift`` places later (enough for every stage to run; not a search)."""
    from spt_tf.data import formats, synthetic

    synthetic.generate(root, identities=identities, poses_per_identity=poses, height=height, width=width,
                       seed=seed, test_fraction=test_fraction)  # fmt: skip
    names = list(formats.read_annotations(os.path.join(root, "annotation-train.csv")))
    pairs = [(a, names[(i + pair_shift) % len(names)]) for i, a in enumerate(names)]
    formats.write_pairs(os.path.join(root, "pseudo-pairs.csv"), pairs)
    return root


def app_args(*argv):
    """``python -m spt_tf.apps`` arguments parsed as the CLI parses them (no absl flags)."""
    from spt_tf.apps import __main__ as cli

    return cli.build_parser(argparse.ArgumentParser).parse_args(list(argv))
