"""`run(config, workdir, stage)`: the training loop around the stage models.

Per stage: a strategy-distributed dataset, the stage model with its networks
built and its optimizers built inside the strategy scope, a
`tf.train.CheckpointManager` under `WORKDIR/<stage>/`, TensorBoard summaries
under `WORKDIR/tensorboard/<stage>/`, a console progress bar, a NaN/Inf guard,
and SIGTERM/SIGINT handling (checkpoint, then a clean exit).

Stages start from the previous stages' checkpoints (the networks they need),
and resume from their own latest checkpoint at its step with optimizer state.

The ``parser`` stage trains the human parser for custom photos. It
is not part of Algorithm 1: ``--stage all`` never runs it, it needs no other
stage, and it builds, checkpoints and restores the parser alone; its
checkpoints hold nothing else.

What differs between stages (networks, initialisation, dataset, optimizers,
summaries, validation) is in their objects, :mod:`spt_tf.training.stage_specs`;
this loop is the same for all. Networks are built and restored by
:mod:`spt_tf.networks`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from spt_tf import networks as networks_lib
from spt_tf.training import stage_specs
from spt_tf.training import strategy as strategy_lib

STAGES = ("pose_detector", "semantic", "appearance", "joint")
# With model.progressive (DeepFashion 256): appearance and joint train the global
# generator (alpha 0), then the local enhancer fades in alone, then everything.
PROGRESSIVE_STAGES = ("progressive_local", "progressive_all")
# The human parser: run on its own (`--stage parser`), never by `--stage all`.
PARSER_STAGE = "parser"
ALL_STAGES = STAGES + PROGRESSIVE_STAGES + (PARSER_STAGE,)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint was kept."""


class Interrupted(Exception):
    """SIGTERM / SIGINT received; a checkpoint was written."""


def stages_for(config, stage: str) -> tuple[str, ...]:
    """The stages `--stage` runs, given the ablation (`train.ablation`).

    "all" is Algorithm 1 (never the parser stage, which is run by name).
    """
    if stage != "all":
        if stage not in ALL_STAGES:
            raise ValueError(f"--stage must be one of {ALL_STAGES + ('all',)}, got {stage!r}")
        if stage in PROGRESSIVE_STAGES and not config.model.progressive:
            raise ValueError(f"stage {stage} needs model.progressive=True")
        return (stage,)
    ablation = config.train.ablation
    if ablation == "e2e":
        return STAGES + (PROGRESSIVE_STAGES if config.model.progressive else ())
    if ablation in ("ts_pred", "ts_gt"):
        return ("pose_detector", "semantic", "appearance")
    if ablation == "baseline":
        return ("pose_detector", "appearance")
    raise ValueError(f"train.ablation must be e2e, ts_pred, ts_gt or baseline, got {ablation!r}")


def write_config(config, workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


def _steps(config, stage):
    return int(getattr(config.train, f"{stage}_steps"))


def _init_from_previous(stage: stage_specs.Stage, nets: networks_lib.Networks, workdir):
    for prev, names in stage.init_from.items():
        path = networks_lib.latest_checkpoint(workdir, prev)
        ckpt_dir = os.path.join(workdir, prev)
        if path is None:
            if stage.required == prev:
                raise FileNotFoundError(
                    f"stage {stage.name!r} starts from the {prev} stage, but {ckpt_dir} has no "
                    f"checkpoint: run --stage {prev} first (or --stage all)"
                )
            logging.warning(
                "stage %s: no checkpoint of stage %s in %s; %s start from scratch%s",
                stage.name, prev, ckpt_dir, ", ".join(names),
                " (the pose loss then uses an untrained detector)" if prev == "pose_detector" else "",
            )  # fmt: skip
            continue
        names = [n for n in names if n in nets.models()]
        networks_lib.restore(nets, path, names)
        logging.info("stage %s: %s initialised from %s", stage.name, ", ".join(names), path)


class _SignalFlag:
    def __init__(self):
        self.received = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _to_float(values) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


def learning_rate_scale(step: int, total: int, decay_fraction: float) -> float:
    """The factor on every optimizer's rate at ``step`` of ``total`` (``train.lr_decay_fraction``).

    Constant, then linear to zero over the last ``decay_fraction`` of the stage's steps
    (as pix2pixHD decays its GAN's rate): the update at the last step is ``1/n`` of the
    configured one, ``n`` the number of decaying steps. 0 keeps the rate constant.
    """
    n = int(round(total * decay_fraction))
    if n <= 0:
        return 1.0
    return min(1.0, (total - step) / n)


def train_stage(config, workdir: str, stage: str, strategy=None, nets: networks_lib.Networks | None = None,
                max_steps: int | None = None, validators=None) -> dict:  # fmt: skip
    """Trains one stage to `train.<stage>_steps` (resuming if checkpointed).

    `nets`: the networks, built inside `strategy`'s scope (default: built here);
    they must include the stage's (`stage_specs.get(stage).network_keys(config)`).
    `max_steps`: stop there instead (the learning-rate schedule, `train.lr_decay_fraction`,
    still follows `train.<stage>_steps`).
    `validators`: `{"pose_detector": fn, "parser": fn}`, each
    `fn(config, network, split) -> dict`, the end-of-stage validation on real
    images (`spt_tf.evaluation.stage_validators()`); a stage whose validator is
    missing is not measured (and P's PCKh then cannot unlock the pose loss).

    Returns a summary dict: stage, start_step, final_step, last losses, seconds,
    examples_per_second, status ("done" | "interrupted"); the parser stage adds
    `validation` (:func:`spt_tf.evaluation.human_parser.evaluate` on the test split).

    Raises:
      NonFiniteLossError: a loss is NaN/Inf (names step and loss); nothing is saved.
    """
    strategy = strategy or strategy_lib.build_strategy(config)
    precision = strategy_lib.set_precision(config)
    xla = strategy_lib.use_xla(config)
    chief = strategy_lib.is_chief(strategy)
    global_batch = int(config.train.batch_size)
    total = _steps(config, stage) if max_steps is None else int(max_steps)
    spec = stage_specs.get(stage)
    if spec.generates:
        check_pose_detector(config, workdir)
    keys = spec.network_keys(config)
    if nets is not None and (set(keys) - set(nets.keys)):
        raise TypeError(f"stage {stage} trains the networks {keys}, got Networks of {nets.keys}")
    with strategy.scope():
        nets = nets or networks_lib.Networks(config, keys)
        model = spec.model(nets, config, global_batch, xla)
        model.compile(**spec.optimizers(config, precision))
        model.build_optimizers()
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt_dir = os.path.join(workdir, stage)
    if not chief:  # non-chief workers write to a throwaway directory
        ckpt_dir = os.path.join(workdir, "tmp", f"{stage}_worker_{strategy.cluster_resolver.task_id}")
    optimizers = {k: getattr(model, k) for k in ("g_optimizer", "d_optimizer", "h_optimizer")}
    optimizers = {k: v for k, v in optimizers.items() if v is not None}
    # The configured rates, read before a checkpoint can restore a decayed one.
    base_rates = {k: float(np.asarray(v.learning_rate.numpy())) for k, v in optimizers.items()}
    decay_fraction = float(config.train.lr_decay_fraction)
    if not 0.0 <= decay_fraction <= 1.0:
        raise ValueError(f"train.lr_decay_fraction must be in [0, 1], got {decay_fraction}")
    ckpt = tf.train.Checkpoint(step=step, **optimizers, **nets.trackables(keys))
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=int(config.train.keep_checkpoints))
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("stage %s: resumed from %s at step %d", stage, manager.latest_checkpoint, int(step.numpy()))
    else:
        _init_from_previous(spec, nets, workdir)
    start = int(step.numpy())
    if start >= total:
        logging.info("stage %s: already at step %d of %d", stage, start, total)
        return {"stage": stage, "start_step": start, "final_step": start, "status": "done", "losses": {}}

    dist_ds = strategy.distribute_datasets_from_function(lambda ctx: spec.dataset(config, ctx))
    iterator = iter(dist_ds)

    @tf.function
    def dist_step(it):
        batch = next(it)
        per_replica = strategy.run(model.train_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", stage)) if chief else None
    log_every, image_every = int(config.train.log_every), int(config.train.image_every)
    ckpt_every = int(config.train.checkpoint_every)
    values: dict[str, float] = {}
    t0 = time.time()
    t_log, n_log = time.time(), 0
    status = "done"
    with _SignalFlag() as flag, tqdm(total=total, initial=start, desc=stage, disable=not chief,
                                      dynamic_ncols=True, mininterval=2.0) as bar:  # fmt: skip
        while int(step.numpy()) < total:
            alpha = spec.alpha(config, int(step.numpy()))
            if alpha is not None:
                nets.ha.set_alpha(alpha)
            if decay_fraction > 0:
                scale = learning_rate_scale(int(step.numpy()), _steps(config, stage), decay_fraction)
                for k, opt in optimizers.items():
                    opt.learning_rate = base_rates[k] * scale
            values = _to_float(dist_step(iterator))
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                raise NonFiniteLossError(
                    f"stage {stage}: loss {bad[0]} is {values[bad[0]]} at step {int(step.numpy()) + 1}; "
                    f"training stopped, the last good checkpoint ({manager.latest_checkpoint}) is kept"
                )
            step.assign_add(1)
            s = int(step.numpy())
            n_log += 1
            bar.update(1)
            main = {k: v for k, v in values.items()
                    if k.endswith("total") or k in ("pose_detector", "ds_loss", "da_loss", "parser_ce")}  # fmt: skip
            bar.set_postfix({k: f"{v:.3g}" for k, v in main.items()}, refresh=False)
            if writer is not None and (s % log_every == 0 or s == total):
                dt = time.time() - t_log
                with writer.as_default(step=s):
                    for k, v in values.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("train/learning_rate", float(np.asarray(model.g_optimizer.learning_rate.numpy())))
                    tf.summary.scalar("train/examples_per_second", n_log * global_batch / max(dt, 1e-9))
                t_log, n_log = time.time(), 0
            if writer is not None and (s % image_every == 0 or s == total):
                spec.write_images(model, config, writer, s)
            if s % ckpt_every == 0 or s == total or flag.received:
                _save(manager, nets, stage, s)
            if flag.received:
                logging.warning("stage %s: %s at step %d; checkpoint written, exiting", stage, flag.received, s)
                status = "interrupted"
                break
    seconds = time.time() - t0
    done = int(step.numpy()) - start
    validation = None
    if writer is not None:
        validation = spec.validate(model, config, writer, int(step.numpy()), validators)
        writer.flush()
    summary = {
        "stage": stage, "start_step": start, "final_step": int(step.numpy()), "status": status, "losses": values,
        "seconds": seconds, "examples_per_second": done * global_batch / max(seconds, 1e-9),
    }  # fmt: skip
    if validation is not None:
        summary["validation"] = validation
    if chief:
        with open(os.path.join(workdir, f"{stage}_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    if status == "interrupted":
        raise Interrupted(f"stage {stage} interrupted by {flag.received} at step {int(step.numpy())}")
    return summary


class UselessPoseDetectorError(ValueError):
    """The pose loss is on, but P does not find the joints of real images."""


def check_pose_detector(config, workdir: str) -> float | None:
    """Refuses the pose loss (Eq. 6) with a pose detector that cannot find real joints.

    The pose loss only means something when P finds the joints of real images:
    an untrained P turns it into noise. Reads the PCKh on the test split that the
    pose-detector stage wrote (``WORKDIR/pose_detector_summary.json``) and
    requires at least ``train.min_pose_pckh``. Nothing is checked when
    ``loss.lambda_pose`` is 0 or ``train.min_pose_pckh`` is 0.

    Returns:
      P's PCKh, or None when not checked.

    Raises:
      UselessPoseDetectorError: no measured PCKh, or one below the bound; the
        message names the file, the fields and what to do.
    """
    bound = float(config.train.min_pose_pckh)
    if float(config.loss.lambda_pose) == 0.0 or bound <= 0.0:
        return None
    path = os.path.join(workdir, "pose_detector_summary.json")
    fix = (f"train P longer (train.pose_detector_steps, then --stage=pose_detector), or switch the pose "
           f"loss off (loss.lambda_pose=0), or lower train.min_pose_pckh (now {bound:g})")  # fmt: skip
    try:
        with open(path) as f:
            validation = json.load(f).get("validation") or {}
    except FileNotFoundError:
        raise UselessPoseDetectorError(
            f"loss.lambda_pose={config.loss.lambda_pose:g} needs a pose detector measured on real images, "
            f"but {path} does not exist (run --stage=pose_detector first); or {fix}"
        ) from None
    pckh = validation.get("pckh")
    if pckh is None or pckh < bound:
        got = "not measured (no test split?)" if pckh is None else f"{pckh:.3f}"
        raise UselessPoseDetectorError(
            f"loss.lambda_pose={config.loss.lambda_pose:g}, but the pose detector's PCKh on real test images "
            f"is {got} ({path}), below train.min_pose_pckh={bound:g}: its pose loss would be noise; {fix}"
        )
    return float(pckh)


def _save(manager, nets, stage, step):
    """Saves a checkpoint, refusing weights that are not finite."""
    if not nets.has_finite_weights():
        raise NonFiniteLossError(
            f"stage {stage}: non-finite weights at step {step}; not saved, the last good "
            f"checkpoint ({manager.latest_checkpoint}) is kept"
        )
    manager.save(checkpoint_number=step)


def run(config, workdir: str, stage: str = "all", validators=None) -> list[dict]:
    """Runs `stage` (or Algorithm 1 in order for "all"); returns stage summaries.

    `validators`: see :func:`train_stage`.
    """
    write_config(config, workdir)
    keras.utils.set_random_seed(int(config.train.seed))
    strategy = strategy_lib.build_strategy(config)
    strategy_lib.set_precision(config)
    stages = stages_for(config, stage)
    keys = []
    for s in stages:
        keys += [k for k in stage_specs.get(s).network_keys(config) if k not in keys]
    with strategy.scope():
        nets = networks_lib.Networks(config, keys)
    summaries = []
    for s in stages:
        summaries.append(train_stage(config, workdir, s, strategy=strategy, nets=nets, validators=validators))
    return summaries
