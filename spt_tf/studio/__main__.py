"""``python -m spt_tf.studio --saved_model DIR`` (or ``--workdir W [--config C]``): serve the studio.

Prints the address (``--port 0``: any free port) and serves until Ctrl-C.
``make studio`` runs it on the demo's export (``runs/demo/export``) and data.
"""

from __future__ import annotations

import argparse
import os
import sys

from absl import logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spt_tf.studio",
                                description="A browser studio over a trained SPT model (docs/studio.md).")  # fmt: skip
    g = p.add_argument_group("model (one of)")
    g.add_argument("--saved_model", help="SavedModel version directory, or a base directory of versions (newest)")
    g.add_argument("--workdir", help="training workdir (its latest joint / appearance checkpoint; P and the parser "
                                     "when their stages ran)")  # fmt: skip
    g.add_argument("--config", help="config of the workdir's run: file.py[:ARG] or .json (default WORKDIR/config.json)")
    p.add_argument("--parser_workdir", help="a workdir whose parser stage ran: its human parser predicts the parsing "
                                            "of photos uploaded without a map")  # fmt: skip
    p.add_argument(
        "--data_dir",
        help="a dataset root whose test images, annotation-test.csv and parsing maps the page offers "
        "(default: the --workdir config's data root, when present)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--max_request_mb", type=float, default=20.0, help="largest request body accepted, in MB")
    p.add_argument("--max_side", type=int, default=2048, help="largest photo side accepted, in pixels")
    return p


def _config_arg(spec: str) -> str:
    """A config spec with its file made absolute (bundles' commands run from another folder)."""
    path, sep, arg = spec.partition(":")
    return os.path.abspath(path) + sep + arg if os.path.isfile(path) else spec


def load(args):
    """(predictor, model_args, dataset, parser) for the parsed arguments."""
    from spt_tf import predictor as predictor_lib
    from spt_tf.studio import core

    if bool(args.saved_model) == bool(args.workdir):
        raise predictor_lib.ModelError("give exactly one of --saved_model and --workdir")
    be = predictor_lib.load(model=args.saved_model, workdir=args.workdir, config=args.config)
    if args.saved_model:
        model_args = ["--model", os.path.abspath(be.source)]
    else:
        model_args = ["--workdir", os.path.abspath(args.workdir)]
        if args.config:
            model_args += ["--config", _config_arg(args.config)]
    parser = predictor_lib.load_parser(args.parser_workdir) if args.parser_workdir else None
    data_dir, data_config = args.data_dir, None
    if args.workdir:
        data_config = predictor_lib.load_config(args.config or os.path.join(args.workdir, "config.json")).data
        if data_dir is None and os.path.isdir(str(data_config.root)):
            data_dir = str(data_config.root)
    dataset = core.Dataset(data_dir, data_config) if data_dir else None
    return be, model_args, dataset, parser


def main(argv=None) -> None:
    from spt_tf.studio import core, server

    args = build_parser().parse_args(argv)
    logging.set_verbosity(logging.INFO)
    try:
        be, model_args, dataset, parser = load(args)
        studio = core.Studio(be, model_args, dataset, parser, max_side=args.max_side,
                             max_request_bytes=int(args.max_request_mb * (1 << 20)))  # fmt: skip
        srv = server.StudioServer(studio, args.host, args.port)
        logging.info("studio: model warmed up in %.1f s", studio.warm_up())
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    h, w = be.size
    what = f"{be.kind} {be.source}, {h}x{w}"
    extra = [f"dataset {dataset.root} ({len(dataset.names)} test images)" if dataset else "no dataset (--data_dir)",
             "pose detector: yes" if studio.can_detect else "pose detector: no",
             "human parser: yes" if studio.parser is not None else "human parser: no"]  # fmt: skip
    print(f"SPT studio: {srv.url}  ({what}; {'; '.join(extra)}; Ctrl-C stops it)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
