"""kerascnn: the convolutional-network lectures as working Keras 3 software.

Importing this package is cheap: TensorFlow and Keras are imported only by the
modules that build, train or export models.

``build`` and ``analyze`` are defined here; the workflow -- ``train``, ``evaluate``, ``predict``,
``export``, ``load_run`` -- lives in ``kerascnn.api`` (imported on first use), the same code the
``kerascnn`` commands run.
"""
from kerascnn._version import __version__  # noqa: F401

_API = ("train", "evaluate", "predict", "export", "load_run")


def __getattr__(name):
    if name in _API:
        from kerascnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))


def build(name: str, input_shape=None, num_classes=None, **options):
    """A registered model: ``kerascnn.build("vgg16", input_shape=(224, 224, 3))`` (a ``keras.Sequential``
    built from its spec list; the keras.applications family, e.g. ``"mobilenetv2"``, by Keras's own
    constructor)."""
    from kerascnn.registry import build_model

    return build_model(name, input_shape, num_classes, **options)


def analyze(model_or_spec, input_shape=None, num_classes=None, **options):
    """The lecture arithmetic (params, multiply-adds, receptive field, jump, activation memory) of

    * a built Keras model (Sequential or functional, nested models included) -> a ``KerasReport``
      whose ``print()`` is the ``kerascnn summary`` table;
    * a ``.keras`` file path (read from its ``config.json``, no TensorFlow; ``input_shape`` analyses
      it at another size) -> a ``KerasReport``;
    * a registered model name (``"vgg16"``) or a layer spec (``"conv5-10s1p2"`` with ``input_shape``)
      -> a ``Report``.

    In Jupyter a report shows as an HTML table.
    """
    if isinstance(model_or_spec, str):
        from kerascnn.registry import get_entry, is_model

        if model_or_spec.endswith(".keras"):  # read from its config.json: no TensorFlow, no weights
            from kerascnn.keras_analysis import analyze_file

            return analyze_file(model_or_spec, input_shape)[0]
        if model_or_spec.endswith(".h5"):
            from kerascnn.keras_analysis import analyze_keras, load_keras_model

            return analyze_keras(load_keras_model(model_or_spec))
        if is_model(model_or_spec):
            return get_entry(model_or_spec).analyze(input_shape, num_classes, **options)
        from kerascnn import speclang

        model_or_spec = speclang.parse(model_or_spec)
    if isinstance(model_or_spec, (list, tuple)):
        from kerascnn.analysis import analyze as analyze_specs
        from kerascnn.errors import ConfigError

        if input_shape is None:
            raise ConfigError("a layer spec needs input_shape=(H, W, C)")
        return analyze_specs(model_or_spec, input_shape)
    from kerascnn.keras_analysis import analyze_keras

    return analyze_keras(model_or_spec)


def layer_values(model_or_spec: str, input, kernel=None, bias=None, weights=None, each_layer: bool = False):
    """The numbers a layer computes, as ``kerascnn values`` prints them: ``input`` is a grid text
    (``"1,1,2,4; 5,6,7,8"``), ``"arange:4x4"``, a ``.npy`` path or an (H, W[, C]) array; ``kernel`` and
    ``bias`` the same for the first conv/dense layer (default: all ones, zero). Returns a list of
    ``LayerOutput(name, cls, values)`` (the last layer, or every one with ``each_layer``) that
    ``print()`` shows as text and Jupyter as HTML tables."""
    import numpy as np

    from kerascnn import values as V
    from kerascnn.tfquiet import import_tensorflow_if_installed

    x = V.parse_input(input) if isinstance(input, str) else np.asarray(input, np.float32)
    x = x[..., None] if x.ndim == 2 else x
    k = V.parse_kernel(kernel) if isinstance(kernel, str) else kernel
    b = V.parse_bias(bias) if isinstance(bias, str) else bias
    import_tensorflow_if_installed()
    return V.run_values(model_or_spec, x, k, b, weights, each_layer)[0]
