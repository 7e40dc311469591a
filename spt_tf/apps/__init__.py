"""Applications on custom images: pose transfer, texture transfer, parsing edits.

CLI: ``python -m spt_tf.apps {pose-transfer,texture-transfer,edit} --help``
(docs/applications.md). Modules:

* :mod:`~spt_tf.apps.keypoints`: OpenPose JSON (COCO-18, BODY_25), pose detector peaks, annotation CSVs;
* :mod:`~spt_tf.apps.parsing`: LIP -> SPT, painted label maps, sleeve and pants/skirt edits;
* :mod:`~spt_tf.apps.resize`: letterboxing photos of any size to the model and back;
* :mod:`~spt_tf.apps.figures`: skeletons, coloured parsing, side-by-side figures;
* :mod:`~spt_tf.apps.commands`: the three applications.

Models (a SavedModel or a training workdir) are run through :mod:`spt_tf.predictor`.
Importing this package loads no TensorFlow; the predictor does.
"""
