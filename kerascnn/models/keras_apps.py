"""The keras.applications family: every architecture of ``keras.applications`` as a zoo model,
built by Keras's own constructor (``keras.applications.MobileNetV2(weights=None, ...)``).

A zoo model is ``images [0, 1] -> ImagenetPreprocess(mode) -> <the keras.applications model>``:
the constructor builds on that layer's output (``input_tensor``), so the model is one flat
functional model with Keras's layers and names, and it carries the architecture's own
preprocessing (``preprocess_input``'s mode: ``caffe``, ``tf``, ``torch``, or ``raw`` for
the models that preprocess inside: EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3).
Its weights load from the user's file or the Keras cache (``kerascnn.pretrained.keras_apps``),
never downloaded. ``VGG16``, ``VGG19`` and ``ResNet50`` are kerascnn's own ``vgg16``, ``vgg19``
and ``resnet50 -o variant=keras`` (spec models, layer for layer the same, tested), so they are not
registered twice.

These entries have no spec list (``registry.KerasEntry``): their arithmetic is the Keras-model
analysis of the built model, and the figures ``kerascnn list`` shows are recorded here from it
(``benchmarks/keras_apps.py --record`` prints them; ``tests/test_keras_apps.py`` checks some and
the benchmark all of them). Names are the constructors' in lower case: ``mobilenetv2``.
"""
from __future__ import annotations

from dataclasses import dataclass

from kerascnn.errors import GeometryError
from kerascnn.models.base import Published, register_keras_model


@dataclass(frozen=True)
class KerasApp:
    """One keras.applications architecture as kerascnn uses it."""

    constructor: str        # keras.applications.<constructor>
    module: str             # keras.applications.<module>: its preprocess_input / decode_predictions
    preprocessing: str      # ImagenetPreprocess mode: caffe | tf | torch | raw
    family: str
    paper: str
    year: int
    size: int               # the constructor's default (natural) input, square
    min_size: int = 32      # imagenet_utils.obtain_input_shape's min_size (the smallest input that builds)

    @property
    def source(self) -> str:
        return f"keras.applications.{self.constructor}"


def _apps():
    M, E, E2 = "Howard et al., arXiv 2017", "Tan & Le, ICML 2019", "Tan & Le, ICML 2021"
    out = [KerasApp("MobileNet", "mobilenet", "tf", "mobilenet", M, 2017, 224),
           KerasApp("MobileNetV2", "mobilenet_v2", "tf", "mobilenet", "Sandler et al., CVPR 2018", 2018, 224),
           KerasApp("MobileNetV3Small", "mobilenet_v3", "raw", "mobilenet", "Howard et al., ICCV 2019", 2019, 224),
           KerasApp("MobileNetV3Large", "mobilenet_v3", "raw", "mobilenet", "Howard et al., ICCV 2019", 2019, 224)]
    out += [KerasApp(f"EfficientNetB{i}", "efficientnet", "raw", "efficientnet", E, 2019, s)
            for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))]
    out += [KerasApp(f"EfficientNetV2{v}", "efficientnet_v2", "raw", "efficientnet", E2, 2021, s)
            for v, s in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480))]
    out += [KerasApp(f"ConvNeXt{v}", "convnext", "raw", "convnext", "Liu et al., CVPR 2022", 2022, 224)
            for v in ("Tiny", "Small", "Base", "Large", "XLarge")]
    out += [KerasApp(f"DenseNet{d}", "densenet", "torch", "densenet", "Huang et al., CVPR 2017", 2016, 224)
            for d in (121, 169, 201)]
    out += [KerasApp("Xception", "xception", "tf", "xception", "Chollet, CVPR 2017", 2016, 299, 71),
            KerasApp("InceptionV3", "inception_v3", "tf", "inception", "Szegedy et al., CVPR 2016", 2015, 299, 75),
            KerasApp("InceptionResNetV2", "inception_resnet_v2", "tf", "inception", "Szegedy et al., AAAI 2017",
                     2016, 299, 75),
            KerasApp("NASNetMobile", "nasnet", "tf", "nasnet", "Zoph et al., CVPR 2018", 2017, 224),
            KerasApp("NASNetLarge", "nasnet", "tf", "nasnet", "Zoph et al., CVPR 2018", 2017, 331)]
    out += [KerasApp(f"ResNet{d}", "resnet", "caffe", "resnet", "He et al., CVPR 2016", 2015, 224) for d in (101, 152)]
    out += [KerasApp(f"ResNet{d}V2", "resnet_v2", "tf", "resnet", "He et al., ECCV 2016", 2016, 224)
            for d in (50, 101, 152)]
    return {a.constructor.lower(): a for a in out}


APPS = _apps()

# (params, trainable params, multiply-adds) at the natural input, 1000 classes: Keras's count_params()
# and kerascnn.analyze(model).macs of the model as kerascnn builds it (benchmarks/keras_apps.py --record)
FIGURES = {
    'convnextbase': (88_591_464, 88_591_464, 15_354_729_472),
    'convnextlarge': (197_767_336, 197_767_336, 34_361_433_600),
    'convnextsmall': (50_223_688, 50_223_688, 8_683_712_256),
    'convnexttiny': (28_589_128, 28_589_128, 4_455_531_264),
    'convnextxlarge': (350_196_968, 350_196_968, 60_921_030_656),
    'densenet121': (8_062_504, 7_978_856, 2_834_161_664),
    'densenet169': (14_307_880, 14_149_480, 3_359_843_328),
    'densenet201': (20_242_984, 20_013_928, 4_291_365_888),
    'efficientnetb0': (5_330_571, 5_288_548, 385_814_752),
    'efficientnetb1': (7_856_239, 7_794_184, 686_802_832),
    'efficientnetb2': (9_177_569, 9_109_994, 993_561_872),
    'efficientnetb3': (12_320_535, 12_233_232, 1_827_141_392),
    'efficientnetb4': (19_466_823, 19_341_616, 4_393_771_024),
    'efficientnetb5': (30_562_527, 30_389_784, 10_266_384_752),
    'efficientnetb6': (43_265_143, 43_040_704, 19_067_593_536),
    'efficientnetb7': (66_658_687, 66_347_960, 37_745_884_192),
    'efficientnetv2b0': (7_200_312, 7_139_704, 718_086_176),
    'efficientnetv2b1': (8_212_124, 8_141_052, 1_196_819_360),
    'efficientnetv2b2': (10_178_374, 10_096_086, 1_697_542_832),
    'efficientnetv2b3': (14_467_622, 14_358_406, 3_011_458_816),
    'efficientnetv2l': (119_027_848, 118_515_272, 56_079_699_008),
    'efficientnetv2m': (54_431_388, 54_139_356, 24_582_460_384),
    'efficientnetv2s': (21_612_360, 21_458_488, 8_365_617_152),
    'inceptionresnetv2': (55_873_736, 55_813_192, 13_155_794_016),
    'inceptionv3': (23_851_784, 23_817_352, 5_713_216_096),
    'mobilenet': (4_253_864, 4_231_976, 568_740_352),
    'mobilenetv2': (3_538_984, 3_504_872, 300_774_272),
    'mobilenetv3large': (5_507_432, 5_483_032, 216_589_760),
    'mobilenetv3small': (2_554_968, 2_542_856, 56_510_400),
    'nasnetlarge': (88_949_818, 88_753_150, 23_783_414_658),
    'nasnetmobile': (5_326_716, 5_289_978, 563_638_816),
    'resnet50v2': (25_613_800, 25_568_360, 3_482_255_360),
    'resnet101': (44_707_176, 44_601_832, 7_570_194_432),
    'resnet101v2': (44_675_560, 44_577_896, 7_194_476_544),
    'resnet152': (60_419_944, 60_268_520, 11_282_415_616),
    'resnet152v2': (60_380_648, 60_236_904, 10_906_697_728),
    'xception': (22_910_480, 22_855_952, 8_357_403_496),
}


def check_input(app: KerasApp):
    def check(input_shape, name):
        h, w, c = input_shape
        if c != 3:
            raise GeometryError(f"{name} ({app.source}) takes RGB images: an input H,W,3; received "
                                f"{'x'.join(map(str, input_shape))}")
        if min(h, w) < app.min_size:
            raise GeometryError(f"{name} ({app.source}) cannot take a {h}x{w}x{c} input: keras.applications "
                                f"needs at least {app.min_size}x{app.min_size}")
    return check


def builder(app: KerasApp):
    def build(input_shape, num_classes, name):
        """``images -> ImagenetPreprocess -> keras.applications.<constructor>(weights=None)``, one flat model."""
        import keras

        from kerascnn.layers import ImagenetPreprocess

        inputs = keras.Input(tuple(input_shape), name="images")
        x = ImagenetPreprocess(app.preprocessing, name="imagenet_preprocess")(inputs)
        inner = getattr(keras.applications, app.constructor)(input_tensor=x, input_shape=tuple(input_shape),
                                                             weights=None, classes=int(num_classes))
        return keras.Model(inputs, inner.outputs, name=name)
    return build


def _published(name: str, app: KerasApp) -> tuple:
    if name not in FIGURES:
        return ()
    params, trainable, macs = FIGURES[name]
    return (Published(f"{app.source}(weights=None).count_params(); MACs: kerascnn.analyze(model)",
                      params=params, trainable_params=trainable, macs=macs),)


for _name, _app in APPS.items():
    register_keras_model(_name, builder(_app), check_input(_app), family=_app.family, paper=_app.paper,
                         year=_app.year, default_input=(_app.size, _app.size, 3), source=_app.source,
                         description=f"{_app.source}, built by Keras's constructor; preprocessing {_app.preprocessing}",
                         published=_published(_name, _app), extra=_app)
