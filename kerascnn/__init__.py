"""kerascnn: the convolutional-network lectures as working Keras 3 software.

Importing this package is cheap: TensorFlow and Keras are imported only by the
modules that build, train or export models.
"""
__version__ = "0.1.0"


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
    * a ``.keras`` file path, a registered model name (``"vgg16"``) or a layer spec
      (``"conv5-10s1p2"`` with ``input_shape``) -> a ``Report``.
    """
    if isinstance(model_or_spec, str):
        from kerascnn.registry import get_entry, is_model

        if model_or_spec.endswith((".keras", ".h5")):
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
