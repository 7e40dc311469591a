"""The studio: a browser page over a trained model (docs/studio.md).

``python -m spt_tf.studio --saved_model DIR`` (or ``--workdir W``) serves a page
on 127.0.0.1 where a person is loaded (an upload or a dataset test image), a
target pose is dragged joint by joint, the parsing is painted, a garment is
taken from a second person, and every result downloads as a bundle that the
CLI (``python -m spt_tf.apps``) rebuilds byte for byte. Modules:

* :mod:`~spt_tf.studio.core`: people, the three renders, request fields (no HTTP);
* :mod:`~spt_tf.studio.server`: ``ThreadingHTTPServer`` with the JSON API and the static page;
* :mod:`~spt_tf.studio.bundle`: the download (inputs, outputs, JSON, command);
* :mod:`~spt_tf.studio.garment`: one garment of a render over a photo (also a command);
* :mod:`~spt_tf.studio.screenshots`: the figures of docs/studio.md.

Models run through :mod:`spt_tf.predictor` (the serving signatures); people are
read, letterboxed and edited by :mod:`spt_tf.apps`. Importing this package
loads no TensorFlow.
"""
