# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 1 companion: convolution layers, receptive fields, pooling and normalization
#
# Follows `shared/lectures/001_2fa580675c38872e.txt` ("Convolutional Neural Networks", the
# cs231n-based slides) in order: the cost of fully connected networks, the convolution layer in
# channels-first notation, activation functions, spatial sizes with stride and padding, receptive
# fields, the layer summary and common settings, 1x1, grouped and dilated convolutions, pooling,
# and batch/layer/instance normalization. Every number is computed by kerascnn and asserted.

# %%
import numpy as np

import kerascnn
from companion import check, cli, done, draw, erratum, show, values

# %% [markdown]
# ## 1. Recap: the cost of a fully connected network
#
# The slide counts the weights of a network with n inputs, two hidden layers of d units and one
# output as nd + d² + d, and the note beside it warns that the biases must be counted too. For a
# 32x32x3 image (n = 3,072) and d = 100:

# %%
n, d = 32 * 32 * 3, 100
fcnet = kerascnn.analyze(f"flatten, fc{d}, relu, fc{d}, relu, fc1", input_shape=(32, 32, 3))
show(fcnet)
check("n, the flattened 32x32x3 image", fcnet.layers[0].output_shape[0], 3072)
check("weights and biases: nd + d^2 + d + (d + d + 1)", fcnet.total_params, n * d + d**2 + d + 2 * d + 1)
check("without the biases: nd + d^2 + d", fcnet.total_params - (2 * d + 1), n * d + d**2 + d)

# %% [markdown]
# ## 2. Fully connected layer vs convolution layer
#
# A fully connected layer stretches the 32x32x3 image to a 3072-vector; with 10 outputs its
# weight matrix is 10x3072. A convolution layer keeps the 32x32x3 volume and slides a 5x5x3
# filter over it: one filter gives one 28x28 activation map.

# %%
fc10 = kerascnn.analyze("flatten, fc10", input_shape=(32, 32, 3))
check("FC weights 10 x 3072", fc10.layers[1].params - 10, 10 * 3072)
map1 = kerascnn.analyze("conv5-1", input_shape=(32, 32, 3))
check("one 5x5x3 filter: a 28x28x1 activation map", map1.output_shape, (28, 28, 1))

# %% [markdown]
# ### Six filters, and a batch (channels-first notation)
#
# The slides write volumes channels first (PyTorch's N x C x H x W): a 3x32x32 image and six
# 3x5x5 filters give a 6x28x28 output, a batch of two images 2x6x28x28, and the layer has a
# 6-dimensional bias. Keras, and so kerascnn, put the channels last (H x W x C): the same layer
# turns 32x32x3 into 28x28x6. Given `--input-shape 3,32,32`, kerascnn recognises the
# channels-first shape and says what it probably meant:

# %%
cli("kerascnn summary conv5-6 --input-shape 3,32,32 --no-keras")
six = kerascnn.analyze("conv5-6", input_shape=(32, 32, 3))
check("six 5x5 filters on 32x32x3 (channels last)", six.output_shape, (28, 28, 6))
check("params: 6 x (3*5*5) weights + 6 biases", six.total_params, 6 * 3 * 5 * 5 + 6)
from kerascnn.keras_build import build_sequential
from kerascnn.speclang import parse

six_layer = build_sequential(parse("conv5-6"), (32, 32, 3))
batch = np.zeros((2, 32, 32, 3), np.float32)
check("a batch of 2 images -> 2 x 28 x 28 x 6", tuple(six_layer(batch).shape), (2, 28, 28, 6))
check("kernel shape (F, F, C_in, C_out) in Keras", tuple(six_layer.layers[0].kernel.shape), (5, 5, 3, 6))
check("bias: one per filter", tuple(six_layer.layers[0].bias.shape), (6,))

# %% [markdown]
# ### A ConvNet: convolutions interspersed with activations
#
# Stacking 5x5 convolutions without padding, each followed by a ReLU: 32 -> 28 -> 24.

# %%
stack = kerascnn.analyze("conv5-6, relu, conv5-10, relu, conv5-12, relu", input_shape=(32, 32, 3))
show(stack)
check("sizes 28, 24, 20", [l.output_shape for l in stack.layers if l.cls == "Conv2D"],
      [(28, 28, 6), (24, 24, 10), (20, 20, 12)])
draw(stack, "conv5-6, conv5-10, conv5-12 on 32x32x3 (ReLUs not drawn)")

# %% [markdown]
# ## 3. Activation functions
#
# Each activation applied by a Keras layer to the row [−2, −1, 0, 1, 2]. The slide's leaky ReLU
# is max(0.1x, x) (`leakyrelu0.1`; Keras's default slope is 0.3, kerascnn's `leakyrelu` 0.01) and
# ELU uses α = 1. Maxout (the maximum of two linear functions) is a layer with its own weights and
# has no Keras built-in.

# %%
x = np.array([[-2, -1, 0, 1, 2]], np.float32)
act = {name: values(name, x)[0] for name in ("relu", "leakyrelu0.1", "sigmoid", "tanh", "elu")}
for name, v in act.items():
    print(f"{name:13s}", np.round(v, 4))
check("ReLU max(0, x)", act["relu"], np.maximum(0, x[0]))
check("leaky ReLU max(0.1x, x)", act["leakyrelu0.1"], np.maximum(0.1 * x[0], x[0]), tol=1e-6)
check("sigmoid 1/(1 + e^-x)", act["sigmoid"], 1 / (1 + np.exp(-x[0])), tol=1e-6)
check("tanh", act["tanh"], np.tanh(x[0]), tol=1e-6)
check("ELU: x for x >= 0, e^x - 1 below", act["elu"], np.where(x[0] >= 0, x[0], np.exp(x[0]) - 1), tol=1e-6)

# %% [markdown]
# ## 4. Spatial dimensions: stride
#
# A 7x7 input and a 3x3 filter: stride 1 gives 5x5, stride 2 gives 3x3, and stride 3 does not fit:
# (7 − 3)/3 + 1 = 2.33. Keras (like PyTorch) floors it to 2 and silently drops the last column and
# row; kerascnn says so.

# %%
sizes = {s: kerascnn.analyze(f"conv3-1s{s}", input_shape=(7, 7, 1)) for s in (1, 2, 3)}
check("(7 - 3)/1 + 1", sizes[1].output_shape[:2], (5, 5))
check("(7 - 3)/2 + 1", sizes[2].output_shape[:2], (3, 3))
check("(7 - 3)/3 + 1 = 2.33 does not fit", sizes[3].layers[0].fits, False)
print(sizes[3].warnings())
check("... and is floored to 2 (Keras's own shape)", sizes[3].output_shape[:2], (2, 2))

# %% [markdown]
# ## 5. Zero padding
#
# 7x7 input, 3x3 filter, stride 1, a border of one zero: (7 + 2·1 − 3)/1 + 1 = 7. With stride 1,
# padding (F − 1)/2 keeps the size: F = 3 pads 1, F = 5 pads 2, F = 7 pads 3.

# %%
check("7x7, F=3, S=1, P=1 -> 7x7", kerascnn.analyze("conv3-1p1", input_shape=(7, 7, 1)).output_shape[:2], (7, 7))
for f in (3, 5, 7):
    check(f"F={f} with P=(F-1)/2={(f - 1) // 2} keeps 7x7",
          kerascnn.analyze(f"conv{f}-1p{(f - 1) // 2}", input_shape=(7, 7, 1)).output_shape[:2], (7, 7))

# %% [markdown]
# Without padding, repeated 5x5 convolutions shrink a 32x32 input quickly: 32 -> 28 -> 24 -> 20.

# %%
shrink = kerascnn.analyze("3*conv5-1", input_shape=(32, 32, 3))
check("32 -> 28 -> 24 -> 20", [l.output_shape[0] for l in shrink.layers], [28, 24, 20])

# %% [markdown]
# **The slides' exercise**: a 32x32x3 input, ten 5x5 filters, stride 1, pad 2. The output is
# (32 + 2·2 − 5)/1 + 1 = 32 spatially, so 32x32x10. The number of parameters in this layer: each
# filter has 5·5·3 = 75 weights and a bias, 76, so 760 in all.

# %%
ex = kerascnn.analyze("conv5-10s1p2", input_shape=(32, 32, 3))
show(ex)
check("output volume", ex.output_shape, (32, 32, 10))
check("parameters: 10 x (5*5*3 + 1)", ex.total_params, 760)

# %% [markdown]
# **Padding 1, stride 2**, the setting of the cs231n convolution demo (a 5x5 input, 3x3 filters):
# (5 − 3 + 2)/2 + 1 = 3. With an all-ones kernel on the input 0..24, each output is the sum of the
# 3x3 window it sees, zeros included:

# %%
p1s2 = values("conv3-1s2p1nb", "arange:5x5")
print(p1s2)
xs = np.pad(np.arange(25, dtype=np.float32).reshape(5, 5), 1)
by_hand = np.array([[xs[i:i + 3, j:j + 3].sum() for j in (0, 2, 4)] for i in (0, 2, 4)])
check("3x3, stride 2, pad 1 on 5x5: window sums", p1s2, by_hand)

# %% [markdown]
# ## 6. Receptive fields
#
# One convolution with kernel K: each output sees K x K inputs. Each further convolution adds
# K − 1, so L layers see 1 + L(K − 1).

# %%
for k in (3, 5):
    rfs = [l.receptive_field for l in kerascnn.analyze(f"5*conv{k}-1p{(k - 1) // 2}", input_shape=(64, 64, 1)).layers]
    check(f"K={k}: receptive field after L = 1..5 layers is 1 + L(K-1)", rfs, [1 + L * (k - 1) for L in range(1, 6)])

# %% [markdown]
# For large images this needs many layers; downsampling inside the network (stride 2) makes the
# field grow much faster, because every later step covers twice as many input pixels (the jump):

# %%
strided_rf = [l.receptive_field for l in kerascnn.analyze("3*conv3-1s2p1", input_shape=(64, 64, 1)).layers]
check("three 3x3 stride-2 layers: fields 3, 7, 15 (vs 3, 5, 7 at stride 1)", strided_rf, [3, 7, 15])

# %% [markdown]
# ## 7. Convolution layer: summary and common settings
#
# W2 = (W1 − F + 2P)/S + 1 and H2 = (H1 − F + 2P)/S + 1 each use their own input size; the layer
# has F²CK weights and K biases. On a 32x64x3 input (H1 = 32, W1 = 64) with K = 16, F = 5, S = 1,
# P = 2:

# %%
summ = kerascnn.analyze("conv5-16s1p2", input_shape=(32, 64, 3))
check("H2 x W2 x K", summ.output_shape, (32, 64, 16))
check("F^2 C K + K", summ.total_params, 5**2 * 3 * 16 + 16)

# %% [markdown]
# The common settings on a 32x32x3 input with K = 32: F = 3, S = 1, P = 1 and F = 5, S = 1, P = 2
# keep 32x32; F = 1, S = 1, P = 0 keeps it too. For F = 5, S = 2 the slide says "P = whatever
# fits": on an even input **no** padding fits, since 32 − 5 + 2P is always odd; on 31x31 every P
# fits.

# %%
for f, s, p, want in ((3, 1, 1, 32), (5, 1, 2, 32), (1, 1, 0, 32)):
    check(f"F={f}, S={s}, P={p} on 32x32", kerascnn.analyze(f"conv{f}-32s{s}p{p}", input_shape=(32, 32, 3)).output_shape,
          (want, want, 32))
fits32 = [kerascnn.analyze(f"conv5-32s2p{p}", input_shape=(32, 32, 3)).layers[0].fits for p in range(4)]
fits31 = [kerascnn.analyze(f"conv5-32s2p{p}", input_shape=(31, 31, 3)).layers[0].fits for p in range(4)]
check("F=5, S=2 on 32x32: P = 0..3 fit?", fits32, [False] * 4)
check("F=5, S=2 on 31x31: P = 0..3 fit?", fits31, [True] * 4)

# %% [markdown]
# ## 8. 1x1 convolutions
#
# A 1x1 convolution is a dense layer applied at every position: on a 56x56x64 volume, 32 filters
# of size 1x1x64 each take a 64-dimensional dot product, giving 56x56x32. The values agree with a
# matrix product at every pixel:

# %%
one_by_one = kerascnn.analyze("conv1-32", input_shape=(56, 56, 64))
check("1x1 conv, 32 filters, on 56x56x64", one_by_one.output_shape, (56, 56, 32))
check("params 64*32 + 32 (a dense layer's)", one_by_one.total_params, 64 * 32 + 32)
rng = np.random.default_rng(0)
xin = rng.integers(-3, 4, (4, 4, 3)).astype(np.float32)
w = rng.integers(-2, 3, (1, 1, 3, 2)).astype(np.float32)
check("1x1 conv == x @ W at each pixel", values("conv1-2", xin, kernel=w), xin @ w[0, 0])

# %% [markdown]
# ## 9. Grouped and dilated convolutions (PyTorch's `groups` and `dilation`)
#
# With groups = 2, two convolutions side by side each see half the input channels and produce
# half the outputs: half the weights. With groups = C_in (depthwise), each channel has its own
# filter.

# %%
g1 = kerascnn.analyze("conv3-64", input_shape=(16, 16, 32))
g2 = kerascnn.analyze("conv3-64g2", input_shape=(16, 16, 32))
dw = kerascnn.analyze("dwconv3", input_shape=(16, 16, 32))
check("groups=1: 3*3*32*64 + 64", g1.total_params, 3 * 3 * 32 * 64 + 64)
check("groups=2: 2 x (3*3*16*32) + 64", g2.total_params, 2 * (3 * 3 * 16 * 32) + 64)
check("groups=C_in (depthwise): 3*3*32 + 32", dw.total_params, 3 * 3 * 32 + 32)
dw2 = kerascnn.analyze("dwconv3m2", input_shape=(16, 16, 32))
check("C_out = 64 from C_in = 32: C_out/C_in = 2 filters per channel", dw2.output_shape[-1], 64)
check("... 3*3*32*2 weights + 64 biases", dw2.total_params, 3 * 3 * 32 * 2 + 64)

# %% [markdown]
# Dilation spaces the kernel's taps: a 3x3 kernel with dilation 2 covers a 5x5 region with 9
# weights. So, for a given receptive field, it needs fewer weights than a dense 5x5 kernel (25),
# which is what the slide's "reduce the parameters" refers to; for a given kernel size the count
# is unchanged. On the input 0..24 with all-ones weights it adds the 9 pixels at even positions:

# %%
dil = kerascnn.analyze("conv3-1d2", input_shape=(5, 5, 1))
check("3x3 dilation 2: receptive field 5", dil.receptive_field, 5)
check("... with 9 weights + 1 bias", dil.total_params, 10)
check("sum of the 9 dilated taps of 0..24", values("conv3-1d2", "arange:5x5")[0, 0],
      float(np.arange(25).reshape(5, 5)[::2, ::2].sum()))

# %% [markdown]
# ## 10. Pooling
#
# Max pooling with 2x2 filters and stride 2 on the slide's 4x4 example:

# %%
mp = values("maxpool2", "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4")
print(mp)
check("max pool 2x2 stride 2", mp, np.array([[6, 8], [3, 4]]))
check("no learnable parameters", kerascnn.analyze("maxpool2", input_shape=(4, 4, 1)).total_params, 0)

# %% [markdown]
# The pooling summary: W2 = (W1 − F)/S + 1, H2 likewise, and no parameters. For example 2x2/2 on
# 224 gives 112, and AlexNet's overlapping 3x3/2 pool on 55 gives 27.

# %%
check("(224 - 2)/2 + 1", kerascnn.analyze("maxpool2", input_shape=(224, 224, 64)).output_shape[0], 112)
check("(55 - 3)/2 + 1", kerascnn.analyze("maxpool3s2", input_shape=(55, 55, 96)).output_shape[0], 27)
erratum("001, 'Pooling layer: summary'", "\"Conv layer needs 2 hyperparameters\" on the pooling slide",
        "the pooling layer needs 2 hyperparameters (F and S)",
        "a slip copied from the convolution summary; pooling has no K and, usually, no P.")

# %% [markdown]
# ## 11. Normalization
#
# **Batch normalization** learns a scale γ and shift β per feature (per channel for a
# convolution) and, at test time, uses running averages of the mean and variance. Keras keeps
# both: 2C trainable and 2C non-trainable numbers.

# %%
bn_fc = kerascnn.analyze("flatten, fc100, bn", input_shape=(8, 8, 1))
bn_conv = kerascnn.analyze("conv3-16p1, bn", input_shape=(8, 8, 3))
check("BN after a 100-unit dense layer: gamma, beta of shape D", bn_fc.layers[2].trainable_params, 2 * 100)
check("... plus the running mean and variance", bn_fc.layers[2].params, 4 * 100)
check("spatial BN: one gamma, beta per channel (1 x C x 1 x 1)", bn_conv.layers[1].trainable_params, 2 * 16)

# %% [markdown]
# At test time batch normalization is a fixed affine map per channel, so it can be folded into the
# convolution before it ("zero overhead at test time"). kerascnn's `fold_batchnorm` does this; the
# folded model has no BatchNormalization layer and computes the same values:

# %%
from kerascnn.fuse import count_batchnorm, fold_batchnorm

specs = parse("conv3-8p1nb, bn, relu")
net = build_sequential(specs, (8, 8, 3))
bn_layer = net.layers[1]
bn_layer.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.5, 2, 8)])
fused = fold_batchnorm(net, specs=specs)
xb = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
diff = float(np.max(np.abs(np.asarray(net(xb, training=False)) - np.asarray(fused(xb)))))
check("BatchNorm layers after folding", count_batchnorm(fused), 0)
check("folded == conv + BN at inference (max |diff| <= 1e-5)", diff <= 1e-5, True)

# %% [markdown]
# **Layer normalization** computes μ, σ per example (N x 1) but learns γ, β per feature. The
# lecture's slide lists "γ, β: N x 1" for layer normalization, and "γ, β: N x C x 1 x 1" for
# instance normalization: learnable parameters cannot depend on the batch size N. They are 1 x D
# (layer norm) and 1 x C x 1 x 1 (instance norm), as in the batch-norm slides. In Keras:

# %%
ln = kerascnn.analyze("flatten, fc100, ln", input_shape=(8, 8, 1))
inorm = kerascnn.analyze("gn16", input_shape=(8, 8, 16))   # group norm with one channel per group
check("LayerNorm over D = 100 features: gamma and beta, 2D", ln.layers[2].params, 2 * 100)
check("instance norm (GroupNorm, G = C = 16): 2C", inorm.layers[0].params, 2 * 16)
ln_model = build_sequential(parse("ln"), (100,))
check("LayerNorm gamma shape: per feature, not per example", tuple(ln_model.layers[0].gamma.shape), (100,))
erratum("001, 'Layer Normalization' and 'Instance Normalization'",
        "γ, β: N × 1 (layer norm) and γ, β: N × C × 1 × 1 (instance norm)",
        "γ, β: 1 × D and 1 × C × 1 × 1",
        "only the statistics μ, σ are computed per example; the learned scale and shift are shared by "
        "every example, so they cannot have a batch axis.")

# %%
done()
