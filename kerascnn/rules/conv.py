"""Sliding-window kinds: convolution, depthwise, separable, pooling, zero padding.

Every one computes the lecture's cross-correlation with the padding it is given on each side:
``out = (W - F_eff + P_before + P_after)/S + 1`` with ``F_eff = 1 + d(F-1)`` (dilation d).
Keras's ``"same"`` is used only where it pads exactly that (stride 1); everywhere else the
built model has an explicit padding layer ``<name>_pad`` and a ``"valid"`` layer.
Max pooling pads with -inf; average pooling counts the zero padding in the average
(PyTorch's ``count_include_pad=True``, its default) for every spelling, ``same`` included.
"""
from __future__ import annotations

import re
from fractions import Fraction

from kerascnn import specs as S
from kerascnn.errors import ConfigError, GeometryError
from kerascnn.rules.base import (Rule, as_pairs, axis_out, check_min, exact_mode, fmt_hw, fmt_pad, pads, pair,
                                 padding_of, parse_mods, register)

_HW = r"(\d+(?:x\d+)?)"


def _size(text: str):
    a, _, b = text.partition("x")
    return int(a) if not b or a == b else (int(a), int(b))


class WindowRule(Rule):
    """A kernel sliding over H and W with stride, padding and dilation."""

    def kernel(self) -> tuple:
        return pair(self.spec.kernel, "kernel", self.name)

    def stride(self) -> tuple:
        return pair(self.spec.stride, "stride", self.name)

    def dilation(self) -> tuple:
        return pair(getattr(self.spec, "dilation", 1), "dilation", self.name)

    def effective_kernel(self) -> tuple:
        """1 + d(F-1) per axis: the span of a dilated kernel."""
        k, d = self.kernel(), self.dilation()
        for v, what in ((k, "kernel"), (self.stride(), "stride"), (d, "dilation")):
            if min(v) < 1:
                raise ConfigError(f"{self.name}: {what} must be >= 1; received {v}")
        return tuple(1 + dd * (kk - 1) for kk, dd in zip(k, d))

    def pads(self) -> tuple:
        return pads(self.spec.padding, self.effective_kernel(), self.name)

    def out_channels(self, c_in: int) -> int:
        return c_in

    def _geometry(self, in_shape):
        h, w, c = self._spatial(in_shape)
        f, s, p = self.effective_kernel(), self.stride(), self.pads()
        oh, nh = axis_out(h, f[0], s[0], p[0][0], p[0][1], self.name)
        ow, nw = axis_out(w, f[1], s[1], p[1][0], p[1][1], self.name)
        return (oh, ow, self.out_channels(c)), nh or nw

    def output_shape(self, in_shape) -> tuple:
        return self._geometry(in_shape)[0]

    def note(self, in_shape) -> str:
        return self._geometry(in_shape)[1]

    def field(self, rf, jump, start, in_shape=None) -> tuple:
        """r += (F_eff-1) j; start += ((F_eff-1)/2 - P_before) j; j *= S (per axis)."""
        rf, jump, start = as_pairs(rf, jump, start)
        f, s, p = self.effective_kernel(), self.stride(), self.pads()
        return (tuple(r + (ff - 1) * j for r, ff, j in zip(rf, f, jump)),
                tuple(j * ss for j, ss in zip(jump, s)),
                tuple(st + ((ff - 1) / 2 - pp[0]) * j for st, ff, pp, j in zip(start, f, p, jump)))

    # ---- Keras
    def _keras_padding(self, fill: str = "zero", allow_same: bool = True) -> tuple:
        """(Keras padding string, [pad layer]) computing the lecture's padding exactly."""
        p, f = self.pads(), self.effective_kernel()
        if p == ((0, 0), (0, 0)):
            return "valid", []
        if allow_same and self.stride() == (1, 1) and p == tuple(((ff - 1) // 2, ff // 2) for ff in f):
            return "same", []  # stride 1: Keras's "same" pads exactly (F-1)//2 before, F//2 after
        from kerascnn.exact_layers import pad_layer

        return "valid", [pad_layer(p, fill, f"{self.spec.name}_pad")]

    def _keras_class(self, stock: str):
        """The Keras class of a convolution: ``keras.layers.<stock>``, or for stride > 1 with dilation > 1
        (which Keras refuses) its exact ``Subsampled<stock>`` under ``exact_windows()`` (``values``)."""
        import keras

        if max(self.stride()) > 1 and max(self.dilation()) > 1:
            if not exact_mode():
                raise ConfigError(
                    f"{self.name}: Keras cannot build a convolution with stride > 1 and dilation > 1 (its {stock} "
                    f"refuses strides={self.stride()} with dilation_rate={self.dilation()}); the arithmetic "
                    f"holds (output (W - F_eff + 2P)/S + 1 with F_eff = 1 + d(F-1)), and `kerascnn values` "
                    f"computes the layer exactly (the stride-1 dilated convolution, every S-th output kept)")
            from kerascnn import exact_layers

            return getattr(exact_layers, f"Subsampled{stock}")
        return getattr(keras.layers, stock)

    def _mods_text(self, groups=False, mult=False) -> str:
        sp = self.spec
        t = ""
        if pair(sp.stride) != (1, 1):
            t += f"s{fmt_hw(sp.stride)}"
        t += fmt_pad(sp.padding)
        if pair(getattr(sp, "dilation", 1)) != (1, 1):
            t += f"d{fmt_hw(sp.dilation)}"
        if groups and sp.groups != 1:
            t += f"g{sp.groups}"
        if mult and sp.depth_multiplier != 1:
            t += f"m{sp.depth_multiplier}"
        if not getattr(sp, "use_bias", True):
            t += "nb"
        return t

    def _with_activation(self, text: str) -> str:
        act = getattr(self.spec, "activation", None)
        return f"{text},{act}" if act else text


def _conv_kwargs(mods: dict, token: str) -> dict:
    """The modifiers every convolution spelling shares (sS pP|same|valid dD nb), plus gG (groups) or
    mM (depth multiplier) where the kind allows them (``parse_mods`` refuses them elsewhere)."""
    kw = {"stride": check_min(mods.get("s", 1), 1, "stride", token), "padding": padding_of(mods),
          "dilation": check_min(mods.get("d", 1), 1, "dilation", token), "use_bias": "nb" not in mods}
    if "g" in mods:
        kw["groups"] = check_min(mods["g"], 1, "groups", token)
    if "m" in mods:
        kw["depth_multiplier"] = check_min(mods["m"], 1, "depth multiplier", token)
    return kw


def _parse_conv(rx, t, token, help_text, extra: str, make, filters: bool = True):
    """``KIND{k}[-{filters}]`` plus the shared modifiers and ``extra`` (g: groups, m: depth multiplier)
    -> ``[make([filters,] k, **kwargs)]``; None when ``rx`` does not match."""
    m = rx.match(t)
    if not m:
        return None
    k = check_min(_size(m.group(1)), 1, "kernel size", token)
    args = [check_min(int(m.group(2)), 1, "filters", token)] if filters else []
    mods = parse_mods(m.group(m.lastindex), f"s,p,d,{extra},nb,same,valid", token, help_text)
    return [make(*args, k, **_conv_kwargs(mods, token))]


@register(S.Conv)
class ConvRule(WindowRule):
    """Conv2D: params F_h F_w C/g K + K; MACs H_o W_o K F_h F_w C/g."""

    keywords = ("conv",)
    _RE = re.compile(rf"^conv{_HW}-(\d+)(.*)$")

    def out_channels(self, c_in: int) -> int:
        sp = self.spec
        if sp.filters < 1:
            raise ConfigError(f"{self.name}: filters must be >= 1; received {sp.filters}")
        if sp.groups < 1 or c_in % sp.groups or sp.filters % sp.groups:
            raise ConfigError(f"{self.name}: groups={sp.groups} must divide input channels {c_in} "
                              f"and filters {sp.filters}")
        return sp.filters

    def _per_output(self, c_in: int) -> int:
        kh, kw = self.kernel()
        return kh * kw * c_in // self.spec.groups

    def params(self, in_shape) -> tuple:
        self.output_shape(in_shape)
        n = self._per_output(in_shape[-1]) * self.spec.filters + (self.spec.filters if self.spec.use_bias else 0)
        return n, n

    def macs(self, in_shape) -> int:
        oh, ow, k = self.output_shape(in_shape)
        return oh * ow * k * self._per_output(in_shape[-1])

    def keras_layers(self, dtype=None) -> list:
        sp = self.spec
        cls = self._keras_class("Conv2D")
        pad, pre = self._keras_padding()
        return pre + [cls(sp.filters, self.kernel(), strides=self.stride(), padding=pad,
                          dilation_rate=self.dilation(), groups=sp.groups,
                          activation=sp.activation, use_bias=sp.use_bias, **self._kw(dtype))]

    def token(self) -> str:
        return self._with_activation(f"conv{fmt_hw(self.spec.kernel)}-{self.spec.filters}"
                                     f"{self._mods_text(groups=True)}")

    @classmethod
    def parse(cls, t, token, help_text):
        return _parse_conv(cls._RE, t, token, help_text, "g", S.Conv)


@register(S.DepthwiseConv)
class DepthwiseConvRule(WindowRule):
    """DepthwiseConv2D: params F_h F_w C m + C m; MACs H_o W_o C m F_h F_w (MobileNet's D_K^2 M D_F^2)."""

    keywords = ("dwconv",)
    _RE = re.compile(rf"^dwconv{_HW}(.*)$")

    def out_channels(self, c_in: int) -> int:
        if self.spec.depth_multiplier < 1:
            raise ConfigError(f"{self.name}: depth_multiplier must be >= 1; received {self.spec.depth_multiplier}")
        return c_in * self.spec.depth_multiplier

    def params(self, in_shape) -> tuple:
        c = self.output_shape(in_shape)[-1]
        kh, kw = self.kernel()
        n = kh * kw * c + (c if self.spec.use_bias else 0)
        return n, n

    def macs(self, in_shape) -> int:
        oh, ow, c = self.output_shape(in_shape)
        kh, kw = self.kernel()
        return oh * ow * c * kh * kw

    def keras_layers(self, dtype=None) -> list:
        sp = self.spec
        cls = self._keras_class("DepthwiseConv2D")
        pad, pre = self._keras_padding()
        return pre + [cls(self.kernel(), strides=self.stride(), padding=pad, depth_multiplier=sp.depth_multiplier,
                          dilation_rate=self.dilation(), activation=sp.activation,
                          use_bias=sp.use_bias, **self._kw(dtype))]

    def token(self) -> str:
        return self._with_activation(f"dwconv{fmt_hw(self.spec.kernel)}{self._mods_text(mult=True)}")

    @classmethod
    def parse(cls, t, token, help_text):
        return _parse_conv(cls._RE, t, token, help_text, "m", S.DepthwiseConv, filters=False)


@register(S.SeparableConv)
class SeparableConvRule(WindowRule):
    """SeparableConv2D = depthwise (no bias) + pointwise 1x1 (bias): params F_h F_w C m + C m K + K;
    MACs H_o W_o (C m F_h F_w + C m K), MobileNet's D_K^2 M D_F^2 + M N D_F^2."""

    keywords = ("sepconv",)
    _RE = re.compile(rf"^sepconv{_HW}-(\d+)(.*)$")

    def out_channels(self, c_in: int) -> int:
        if self.spec.filters < 1 or self.spec.depth_multiplier < 1:
            raise ConfigError(f"{self.name}: filters and depth_multiplier must be >= 1")
        return self.spec.filters

    def params(self, in_shape) -> tuple:
        self.output_shape(in_shape)
        cm = in_shape[-1] * self.spec.depth_multiplier
        kh, kw = self.kernel()
        k = self.spec.filters
        n = kh * kw * cm + cm * k + (k if self.spec.use_bias else 0)
        return n, n

    def macs(self, in_shape) -> int:
        oh, ow, k = self.output_shape(in_shape)
        cm = in_shape[-1] * self.spec.depth_multiplier
        kh, kw = self.kernel()
        return oh * ow * cm * kh * kw + oh * ow * cm * k

    def keras_layers(self, dtype=None) -> list:
        sp = self.spec
        cls = self._keras_class("SeparableConv2D")
        pad, pre = self._keras_padding()
        return pre + [cls(sp.filters, self.kernel(), strides=self.stride(), padding=pad,
                          depth_multiplier=sp.depth_multiplier, dilation_rate=self.dilation(),
                          activation=sp.activation, use_bias=sp.use_bias, **self._kw(dtype))]

    def token(self) -> str:
        return self._with_activation(f"sepconv{fmt_hw(self.spec.kernel)}-{self.spec.filters}"
                                     f"{self._mods_text(mult=True)}")

    @classmethod
    def parse(cls, t, token, help_text):
        return _parse_conv(cls._RE, t, token, help_text, "m", S.SeparableConv)


@register(S.Pool)
class PoolRule(WindowRule):
    """Max / average pooling (stride defaults to the size); no parameters, no multiply-adds. As PyTorch's:
    ``d2`` dilation (max pooling), ``ceil`` (ceil_mode), padding at most half the pool size."""

    keywords = ("maxpool", "avgpool", "pool")
    _RE = re.compile(rf"^(max|avg)?pool{_HW}(.*)$")

    def kernel(self) -> tuple:
        return pair(self.spec.size, "pool size", self.name)

    def stride(self) -> tuple:
        return pair(self.spec.stride or self.spec.size, "stride", self.name)

    def pads(self) -> tuple:
        p = super().pads()
        if self.spec.kind not in ("max", "avg"):
            raise ConfigError(f"{self.name}: pooling kind must be 'max' or 'avg'; received {self.spec.kind!r}")
        if self.spec.kind == "avg" and self.dilation() != (1, 1):
            raise ConfigError(f"{self.name}: average pooling has no dilation (PyTorch's avg_pool2d neither); "
                              f"dilate a max pool or a convolution")
        for pp, f in zip(p, self.kernel()):  # PyTorch compares with the pool size, dilated or not
            if 2 * max(pp) > f:
                raise ConfigError(f"{self.name}: pool padding {max(pp)} is more than half the window {f} "
                                  f"(PyTorch refuses it too: a window could hold padding only); use P <= {f // 2}")
        return p

    def _geometry(self, in_shape):
        h, w, c = self._spatial(in_shape)
        f, s, p = self.effective_kernel(), self.stride(), self.pads()
        ceil = self.spec.ceil_mode
        oh, nh = axis_out(h, f[0], s[0], p[0][0], p[0][1], self.name, ceil)
        ow, nw = axis_out(w, f[1], s[1], p[1][0], p[1][1], self.name, ceil)
        return (oh, ow, c), nh or nw

    def keras_layers(self, dtype=None) -> list:
        import keras

        sp = self.spec
        if sp.ceil_mode or self.dilation() != (1, 1):  # no Keras pool computes these: kerascnn's own
            from kerascnn.exact_layers import WindowPool2D

            return [WindowPool2D(sp.kind, self.kernel(), self.stride(), self.dilation(), self.pads(), sp.ceil_mode,
                                 **self._kw(dtype))]
        if sp.kind == "max":
            pad, pre = self._keras_padding(fill="-inf")   # Keras's max "same" ignores padding (= -inf)
            cls = keras.layers.MaxPooling2D
        else:
            pad, pre = self._keras_padding(allow_same=False)  # zeros counted: count_include_pad=True
            cls = keras.layers.AveragePooling2D
        return pre + [cls(self.kernel(), strides=self.stride(), padding=pad, **self._kw(dtype))]

    def token(self) -> str:
        sp = self.spec
        t = f"{sp.kind}pool{fmt_hw(sp.size)}"
        if sp.stride is not None and pair(sp.stride) != pair(sp.size):
            t += f"s{fmt_hw(sp.stride)}"
        t += fmt_pad(sp.padding)
        if pair(sp.dilation) != (1, 1):
            t += f"d{fmt_hw(sp.dilation)}"
        return t + ("ceil" if sp.ceil_mode else "")

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        size = check_min(_size(m.group(2)), 1, "pool size", token)
        mods = parse_mods(m.group(3), "s,p,d,same,valid,ceil", token, help_text)
        stride = check_min(mods["s"], 1, "stride", token) if "s" in mods else None
        dilation = check_min(mods.get("d", 1), 1, "dilation", token)
        return [S.Pool(m.group(1) or "max", size, stride, padding_of(mods), dilation, "ceil" in mods)]


@register(S.ConvTranspose)
class ConvTransposeRule(WindowRule):
    """Conv2DTranspose: out = (H-1)S + 1 + d(F-1) - P_before - P_after + output_padding (PyTorch's
    ConvTranspose2d); params F_h F_w C K + K; MACs H_in W_in C K F_h F_w (every input pixel times the
    whole kernel, as fvcore counts it). Receptive field: the largest number of input pixels one output
    sees, ceil(F_eff/S) for d = 1; the jump divides by S."""

    keywords = ("tconv", "deconv")
    _RE = re.compile(rf"^(?:tconv|deconv){_HW}-(\d+)(.*)$")

    def output_padding(self) -> tuple:
        return pair(self.spec.output_padding, "output padding", self.name)

    def pads(self) -> tuple:
        if self.spec.padding == "same":
            raise ConfigError(f"{self.name}: give a transposed convolution's padding as P (rows cropped per side)")
        return pads(self.spec.padding, self.effective_kernel(), self.name)

    def _geometry(self, in_shape):
        h, w, c = self._spatial(in_shape)
        if self.spec.filters < 1:
            raise ConfigError(f"{self.name}: filters must be >= 1; received {self.spec.filters}")
        out = []
        for n, f, s, d, (lo, hi), op in zip((h, w), self.effective_kernel(), self.stride(), self.dilation(),
                                             self.pads(), self.output_padding()):
            if not 0 <= op < s:
                raise ConfigError(f"{self.name}: output padding {op} must be >= 0 and smaller than the stride {s}")
            size = (n - 1) * s + f - lo - hi + op
            if size <= 0:
                raise GeometryError(f"{self.name}: spatial size collapses: ({n} - 1)*{s} + {f} - {lo + hi} + {op} "
                                    f"= {size} <= 0")
            out.append(size)
        return (out[0], out[1], self.spec.filters), ""

    def params(self, in_shape) -> tuple:
        self.output_shape(in_shape)
        kh, kw = self.kernel()
        k = self.spec.filters
        n = kh * kw * in_shape[-1] * k + (k if self.spec.use_bias else 0)
        return n, n

    def macs(self, in_shape) -> int:
        self.output_shape(in_shape)
        kh, kw = self.kernel()
        return in_shape[0] * in_shape[1] * in_shape[2] * self.spec.filters * kh * kw

    def _reach(self, axis: int, q: int) -> list:
        """The input indices that full-output index ``q`` sees along ``axis``."""
        f, s, d = self.kernel()[axis], self.stride()[axis], self.dilation()[axis]
        return [(q - k * d) // s for k in range(f) if (q - k * d) % s == 0]

    def field(self, rf, jump, start, in_shape=None) -> tuple:
        rf, jump, start = as_pairs(rf, jump, start)
        out_rf, out_jump, out_start = [], [], []
        for a in (0, 1):
            s, lo = self.stride()[a], self.pads()[a][0]
            spans = [max(r) - min(r) for r in (self._reach(a, q) for q in range(s)) if r]
            out_rf.append(rf[a] + max(spans, default=0) * jump[a])
            out_jump.append(Fraction(jump[a]) / s)
            first = self._reach(a, lo) or [lo / s]
            out_start.append(start[a] + (min(first) + max(first)) / 2 * jump[a])
        return tuple(out_rf), tuple(out_jump), tuple(out_start)

    def keras_layers(self, dtype=None) -> list:
        import keras

        sp = self.spec
        crop = self.pads()
        if crop == ((0, 0), (0, 0)):
            return [self._keras_tconv(sp.activation, self._kw(dtype))]
        # Keras's "valid" with an explicit output padding gives the full (H-1)S + F_eff (+ op at the end);
        # the lecture's P is then cropped from each side
        extra = {"dtype": dtype} if dtype else {}
        layers = [self._keras_tconv(None, self._kw()),
                  keras.layers.Cropping2D(crop, name=f"{sp.name}_crop", **({} if sp.activation else extra))]
        if sp.activation:
            layers.append(keras.layers.Activation(sp.activation, name=f"{sp.name}_act", **extra))
        return layers

    def _keras_tconv(self, activation, kw):
        import keras

        sp = self.spec
        cls = keras.layers.Conv2DTranspose
        if max(self.stride()) > 1 and max(self.dilation()) > 1:
            if not exact_mode():
                raise ConfigError(
                    f"{self.name}: Keras cannot build a transposed convolution with stride > 1 and dilation > 1; "
                    f"the arithmetic holds, and `kerascnn values` computes the layer exactly (the input spread "
                    f"out with zeros, then a stride-1 dilated transposed convolution)")
            from kerascnn.exact_layers import SpreadConv2DTranspose as cls
        return cls(sp.filters, self.kernel(), strides=self.stride(), padding="valid",
                   output_padding=self.output_padding(), dilation_rate=self.dilation(),
                   activation=activation, use_bias=sp.use_bias, **kw)

    def token(self) -> str:
        sp = self.spec
        t = f"tconv{fmt_hw(sp.kernel)}-{sp.filters}"
        if pair(sp.stride) != (1, 1):
            t += f"s{fmt_hw(sp.stride)}"
        t += fmt_pad(sp.padding)
        if pair(sp.output_padding) != (0, 0):
            t += f"o{fmt_hw(sp.output_padding)}"
        if pair(sp.dilation) != (1, 1):
            t += f"d{fmt_hw(sp.dilation)}"
        return self._with_activation(t + ("" if sp.use_bias else "nb"))

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        k = check_min(_size(m.group(1)), 1, "kernel size", token)
        filters = check_min(int(m.group(2)), 1, "filters", token)
        mods = parse_mods(m.group(3), "s,p,o,d,nb,valid", token, help_text)
        return [S.ConvTranspose(filters, k, check_min(mods.get("s", 1), 1, "stride", token), padding_of(mods),
                                mods.get("o", 0), check_min(mods.get("d", 1), 1, "dilation", token),
                                use_bias="nb" not in mods)]


@register(S.UpSample)
class UpSampleRule(Rule):
    """UpSampling2D by ``size``: H S_h x W S_w; no parameters. Field: nearest keeps it (each output
    copies one input), bilinear adds one input jump (two neighbours); the jump divides by S."""

    keywords = ("up", "upsample")
    _RE = re.compile(rf"^(?:up|upsample){_HW}(bilinear|nearest)?$")

    def size(self) -> tuple:
        s = pair(self.spec.size, "size", self.name)
        if min(s) < 1:
            raise ConfigError(f"{self.name}: up-sampling size must be >= 1; received {s}")
        if self.spec.interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"{self.name}: interpolation must be 'nearest' or 'bilinear'; "
                              f"received {self.spec.interpolation!r}")
        return s

    def output_shape(self, in_shape):
        h, w, c = self._spatial(in_shape)
        sh, sw = self.size()
        return h * sh, w * sw, c

    def field(self, rf, jump, start, in_shape=None):
        rf, jump, start = as_pairs(rf, jump, start)
        s = self.size()
        grow = 1 if self.spec.interpolation == "bilinear" else 0
        return (tuple(r + grow * j for r, j in zip(rf, jump)),
                tuple(Fraction(j) / ss for j, ss in zip(jump, s)),
                tuple(st + ((1 - ss) / (2 * ss) if grow else 0) * j for st, ss, j in zip(start, s, jump)))

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.UpSampling2D(self.size(), interpolation=self.spec.interpolation, **self._kw(dtype))]

    def token(self):
        return f"up{fmt_hw(self.spec.size)}" + ("bilinear" if self.spec.interpolation == "bilinear" else "")

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        return [S.UpSample(check_min(_size(m.group(1)), 1, "up-sampling size", token), m.group(2) or "nearest")]


@register(S.ZeroPad)
class ZeroPadRule(WindowRule):
    """ZeroPadding2D: H + top + bottom, W + left + right; the field's start moves by -top/-left jumps."""

    keywords = ("zeropad",)
    _RE = re.compile(r"^zeropad(.*)$")

    def kernel(self):
        return 1, 1

    def stride(self):
        return 1, 1

    def keras_layers(self, dtype=None) -> list:
        import keras

        return [keras.layers.ZeroPadding2D(self.pads(), **self._kw(dtype))]

    def token(self) -> str:
        return "zeropad" + (fmt_pad(self.spec.padding)[1:] or "0")

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        if not m.group(1):
            raise ConfigError(f"zeropad needs a size in layer {token!r}, e.g. zeropad1, zeropad1x2, zeropad0:1x0:1")
        mods = parse_mods("p" + m.group(1), "p", token, help_text)
        return [S.ZeroPad(mods["p"])]


@register(S.Crop)
class CropRule(WindowRule):
    """Cropping2D: H - top - bottom, W - left - right; the field is unchanged, its start moves by
    top/left jumps."""

    keywords = ("crop",)
    _RE = re.compile(r"^crop(.*)$")

    def kernel(self):
        return 1, 1

    def stride(self):
        return 1, 1

    def pads(self) -> tuple:  # a crop is negative padding
        return tuple((-a, -b) for a, b in pads(self.spec.cropping, (1, 1), self.name))

    def _geometry(self, in_shape):
        h, w, c = self._spatial(in_shape)
        out = []
        for n, (lo, hi) in zip((h, w), self.pads()):
            if n + lo + hi <= 0:
                raise GeometryError(f"{self.name}: cropping {-lo}+{-hi} leaves nothing of {n} rows/columns")
            out.append(n + lo + hi)
        return (out[0], out[1], c), ""

    def keras_layers(self, dtype=None) -> list:
        import keras

        return [keras.layers.Cropping2D(pads(self.spec.cropping, (1, 1), self.name), **self._kw(dtype))]

    def token(self) -> str:
        return "crop" + (fmt_pad(self.spec.cropping)[1:] or "0")

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        if not m.group(1):
            raise ConfigError(f"crop needs a size in layer {token!r}, e.g. crop1, crop1x2, crop0:1x0:1")
        mods = parse_mods("p" + m.group(1), "p", token, help_text)
        return [S.Crop(mods["p"])]
