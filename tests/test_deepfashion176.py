"""The 256x176 DeepFashion config runs at its real size: every stage of Algorithm 1 (progressive
included, each phase training the right variables) for 2 steps, the export and an evaluation,
on synthetic people drawn at 256x176.

The widths are the testing config's (the full networks cost minutes a step on a CPU); the
frame, the depths (and so the padding of a width that is no power of two), the progressive
generator and the face crop are the config's.
"""

import numpy as np
import pytest
import tensorflow as tf

from configs import spt, testing
from spt_tf import evaluation, networks
from spt_tf.evaluation import evaluator
from spt_tf.export import module
from spt_tf.training import loop
from tests.helpers import make_people

SMALL = ("width_multiplier", "dropout", "d_layers", "d_filters", "pose_blocks", "pose_filters",
         "parser_width_multiplier", "vgg_weights")  # fmt: skip


def _config(root):
    c = spt.get_config("deepfashion176")
    small = testing.get_config()
    for key in SMALL:
        c.model[key] = small.model[key]
    c.model.face_crop_size = 16
    for key, value in small.train.items():
        if key.endswith("_steps") or key in ("checkpoint_every", "log_every", "image_every", "xla",
                                               "min_pose_pckh"):  # fmt: skip
            c.train[key] = value
    c.train.batch_size = 1
    # Summaries and checkpoints at the last step only (the loop always writes them there).
    c.train.image_every = c.train.checkpoint_every = c.train.log_every = 2
    c.eval.batch_size = 2
    # As the testing config: XLA compile time of the pipeline's geometry dominates at test sizes.
    c.data.xla_geometry = False
    c.data.shuffle_buffer = 16
    c.eval.inception_weights = ""
    c.data.root = root
    # The synthetic set's file names (the config's own are the field's: tests/test_configs.py).
    for key in ("annotations_train", "annotations_test", "pairs_train", "pairs_test", "pseudo_pairs",
                "identities"):  # fmt: skip
        c.data[key] = testing.get_config().data[key]
    return c


def test_every_stage_export_and_evaluation_at_256x176(tmp_path):
    data = make_people(str(tmp_path / "data"), identities=4, poses=2, height=256, width=176, seed=5,
                       test_fraction=0.5, pair_shift=1)  # fmt: skip
    c = _config(data)
    c.train.fade_steps = 4
    assert (c.data.height, c.data.width) == (256, 176) and c.model.progressive
    assert loop.stages_for(c, "all") == loop.STAGES + loop.PROGRESSIVE_STAGES
    wd = str(tmp_path / "wd")
    nets = networks.Networks(c)
    validators = evaluation.stage_validators()
    summaries = [loop.train_stage(c, wd, s, nets=nets, validators=validators) for s in loop.STAGES]
    # DeepFashion's progressive schedule: global generator (alpha 0), then the local
    # enhancer alone while it fades in, then everything.
    assert float(nets.ha.alpha.numpy()) == 0.0
    before_global = [v.numpy().copy() for v in nets.ha.global_trainable_variables]
    before_local = [v.numpy().copy() for v in nets.ha.local_trainable_variables]
    summaries.append(loop.train_stage(c, wd, "progressive_local", nets=nets, validators=validators))
    # Alpha is set to step / fade_steps before each step (0, 1/4); local variables only.
    assert float(nets.ha.alpha.numpy()) == pytest.approx(0.25)
    for a, v in zip(before_global, nets.ha.global_trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before_local, nets.ha.local_trainable_variables))
    summaries.append(loop.train_stage(c, wd, "progressive_all", nets=nets, validators=validators))
    assert float(nets.ha.alpha.numpy()) == 1.0
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before_global, nets.ha.global_trainable_variables)), (
        "the 'all' phase must update the global generator too"
    )
    for s in summaries:
        assert s["final_step"] == 2 and all(np.isfinite(v) for v in s["losses"].values()), s

    export = module.export(c, wd, str(tmp_path / "export"))
    sig = tf.saved_model.load(export).signatures["serving_default"]
    assert sig.structured_input_signature[1]["image"].shape.as_list() == [None, 256, 176, 3]
    results = evaluator.run(c, None, str(tmp_path / "eval"), saved_model=export, max_pairs=2,
                            skip_inception=True, allow_random_weights=True)  # fmt: skip
    assert results["num_pairs"] == 2
    model = results["rows"]["model"]
    assert np.isfinite(model["ssim"]) and np.isfinite(model["l1"]) and model["lpips"] > 0
    # LPIPS of the baselines too; random AlexNet weights make the run not comparable, and say so.
    assert results["rows"]["copy_source_image"]["lpips"] > 0 and results["rows"]["real_target"]["lpips"] is None
    assert results["lpips"]["random"] and not results["comparable"]
    assert any("LPIPS" in w for w in results["warnings"])
