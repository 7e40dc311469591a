"""Command line of the pseudo-label search: ``python -m spt_tf.data.pseudo_pairs``.

Writes ``from,to,cost`` rows (resumable; ``--workers`` processes) and prints the JSON
summary of :func:`~spt_tf.data.pseudo_pairs.run_search`::

    python -m spt_tf.data.pseudo_pairs --config configs/synthetic.py
    python -m spt_tf.data.pseudo_pairs --data_dir D --annotations A.csv --parsing_dir P \\
        --out pseudo-pairs.csv --workers 2 [--top_k 8 --prefilter_k 32 --coarse_size 64]
    python -m spt_tf.data.pseudo_pairs --annotations A.csv --parsing_dir P --out O.csv \\
        [--keypoint_tolerance 40]

From code, :func:`main` takes the arguments without the program name.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from absl.flags import argparse_flags

from spt_tf import config_files
from spt_tf.data import formats
from spt_tf.data.pseudo_pairs.runner import run_search
from spt_tf.data.pseudo_pairs.settings import SearchSettings
from spt_tf.data.pseudo_pairs.tables import load_dataset, read_identities

PROG = "python -m spt_tf.data.pseudo_pairs"


def build_parser(parser_class=argparse_flags.ArgumentParser, **kwargs) -> argparse.ArgumentParser:
    """The CLI parser (``parser_class=argparse.ArgumentParser``: without absl's own flags)."""
    p = parser_class(prog=PROG, description="Pseudo-label search of SPT Eq. 1.", **kwargs)
    p.add_argument(
        "--config",
        help="ml_collections config file (path[:arg]); uses data.root, "
        "data.parsing_dir, data.annotations_train, data.pseudo_pairs, "
        "data.identities, data.height/width, data.keypoint_tolerance",
    )
    p.add_argument("--data_dir", help="dataset root (instead of --config)")
    p.add_argument("--annotations", help="annotation CSV (default DATA_DIR/annotation-train.csv)")
    p.add_argument("--parsing_dir", help="parsing maps (default DATA_DIR/parsing)")
    p.add_argument("--identities", help="identities CSV (name,identity); optional")
    p.add_argument("--out", help="output CSV (default: the config's data.pseudo_pairs, or DATA_DIR/pseudo-pairs.csv)")
    p.add_argument("--height", type=int, help="working height (default: config / map size)")
    p.add_argument("--width", type=int, help="working width")
    p.add_argument(
        "--keypoint_tolerance",
        type=float,
        help="pixels a keypoint may lie outside its map (default: the config's "
        "data.keypoint_tolerance, else 2; the field's 256x176 DeepFashion "
        "annotations need formats.DEEPFASHION_176_TOLERANCE = 40)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes for the exact re-ranking")
    p.add_argument(
        "--top_k",
        type=int,
        default=SearchSettings.top_k,
        help="candidates per map that get the exact cost at full resolution",
    )
    p.add_argument(
        "--prefilter_k",
        type=int,
        default=SearchSettings.prefilter_k,
        help="candidates per map kept by the descriptor pre-filter",
    )
    p.add_argument(
        "--coarse_size", type=int, default=SearchSettings.coarse_size, help="height of the coarse exact stage (0: none)"
    )
    p.add_argument("--min_pose_distance", type=float, default=SearchSettings.min_pose_distance)
    p.add_argument(
        "--allow_same_identity",
        action="store_true",
        help="let two images of one identity pair (when identities are known)",
    )
    p.add_argument("--chunk_size", type=int, default=256)
    p.add_argument("--keep_work", action="store_true", help="keep the work folder")
    p.add_argument("--no_progress", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None, parser_class=argparse.ArgumentParser) -> argparse.Namespace:
    """Parses ``argv`` (without the program name) and checks that the inputs are named.

    Exits with status 2 and a usage message (``parser.error``) when they are not.
    """
    p = build_parser(parser_class)
    a = p.parse_args(argv)
    if not (a.config or a.data_dir or (a.annotations and a.parsing_dir and a.out)):
        p.error("give --config, or --data_dir, or all of --annotations --parsing_dir --out")
    if (a.height or a.width) and not (a.height and a.width):
        p.error("give both --height and --width")
    if a.keypoint_tolerance is not None and not a.keypoint_tolerance >= 0:
        p.error(f"--keypoint_tolerance must be >= 0, got {a.keypoint_tolerance:g}")
    return a


def run(a: argparse.Namespace) -> dict:
    """Searches the pseudo pairs the parsed flags describe; prints and returns the summary."""
    tolerance = 2.0
    size = None
    if a.config:
        d = config_files.load_config(a.config).data
        annotations = formats.resolve(d.root, d.annotations_train)
        parsing_dir = formats.resolve(d.root, d.parsing_dir)
        out = a.out or formats.resolve(d.root, d.pseudo_pairs)
        ident_path = a.identities or (formats.resolve(d.root, d.identities) if d.identities else None)
        size = (int(d.height), int(d.width))
        tolerance = float(d.keypoint_tolerance)
    elif a.data_dir:
        annotations = a.annotations or os.path.join(a.data_dir, "annotation-train.csv")
        parsing_dir = a.parsing_dir or os.path.join(a.data_dir, "parsing")
        out = a.out or os.path.join(a.data_dir, "pseudo-pairs.csv")
        ident_path = a.identities
    else:
        annotations, parsing_dir, out, ident_path = a.annotations, a.parsing_dir, a.out, a.identities
    if a.height and a.width:
        size = (a.height, a.width)
    if a.keypoint_tolerance is not None:
        tolerance = a.keypoint_tolerance
    settings = SearchSettings(
        top_k=a.top_k,
        prefilter_k=a.prefilter_k,
        coarse_size=a.coarse_size,
        min_pose_distance=a.min_pose_distance,
        exclude_same_identity=not a.allow_same_identity,
    )
    work_dir = os.fspath(out) + ".work"
    os.makedirs(work_dir, exist_ok=True)
    maps_path = os.path.join(work_dir, "maps.npy")
    names, maps, kp = load_dataset(annotations, parsing_dir, size, maps_path, tolerance, not a.no_progress)
    ids = None
    if ident_path:
        table = read_identities(ident_path)
        missing = [n for n in names if n not in table]
        if missing:
            raise formats.FormatError(
                ident_path, f"no identity for {len(missing)} annotated images, e.g. {missing[0]!r}"
            )
        ids = [table[n] for n in names]
    summary = run_search(
        names,
        maps,
        kp,
        out,
        settings,
        identities=ids,
        workers=a.workers,
        chunk_size=a.chunk_size,
        work_dir=work_dir,
        keep_work=a.keep_work,
        progress=not a.no_progress,
    )
    print(json.dumps(summary, indent=1))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    """The command line from code: ``argv`` without the program name (None: ``sys.argv[1:]``).

    Prints and returns the summary of :func:`~spt_tf.data.pseudo_pairs.run_search`.
    """
    return run(parse_args(argv))


def parse_flags(argv: list[str]) -> argparse.Namespace:
    """``flags_parser`` of ``absl.app.run``: ``argv[0]`` is the program; absl's flags too."""
    return parse_args(argv[1:], argparse_flags.ArgumentParser)


def app_main(args: argparse.Namespace) -> None:
    """``main`` of ``absl.app.run`` (which exits with the returned value: None here)."""
    run(args)
