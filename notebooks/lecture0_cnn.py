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
# # Lecture 0 companion: Convolutional Neural Networks (overview to ResNet)
#
# Follows `shared/lectures/000_fbc6c66fd6f9b9ed.txt` ("2. Convolutional Neural Networks", the
# DeepIntoDeep lecture) section by section: why convolution, the convolutional layer and its
# spatial arrangement, pooling, batch normalization and dropout, and the case studies from LeNet
# to ResNet. Every number the lecture states is computed with kerascnn and asserted with
# `check(...)`; every worked example of values is run through a real Keras layer with
# `values(...)` (kerascnn's `kerascnn values` from Python); the networks it shows are built,
# summarised and drawn. Where the lecture is wrong, the notebook says so and shows the right value.

# %%
from pathlib import Path

import numpy as np

import kerascnn
from companion import WORK, check, done, draw, erratum, picture, show, values

# %% [markdown]
# ## 1. Why do we need convolution?
#
# **CIFAR-10** (section "The CIFAR-10 Dataset"): 32x32 colour images, 10 classes of 6,000 images.
# Flattened for a multilayer perceptron, one image is a vector of 32·32·3 numbers, and a single
# dense layer from it to the 10 classes holds 3072×10 weights (plus 10 biases).

# %%
mlp_cifar = kerascnn.analyze("flatten, fc10", input_shape=(32, 32, 3))
show(mlp_cifar)
check("CIFAR-10 image flattened (32x32x3)", mlp_cifar.layers[0].output_shape[0], 3072)
check("dense 3072 -> 10: weights", mlp_cifar.layers[1].params - 10, 3072 * 10)

# %% [markdown]
# **The Intel image classification example** ("Why not 'MLP'?"): 150x150x3 images and 6 classes,
# flattened into a 128-unit hidden layer. The lecture leaves the input width of the first linear
# layer as "?": it is 150·150·3 = 67,500. kerascnn's `mlp` model is exactly this network.

# %%
mlp = kerascnn.analyze("mlp")
show(mlp)
check("the '?' of the first linear layer (150*150*3)", mlp.layers[0].output_shape[0], 67_500)
check("hidden layer params: 67,500 x 128 + 128", mlp.layers[1].params, 67_500 * 128 + 128)
check("mlp total params", mlp.total_params, 8_640_902)

# %% [markdown]
# 8.6 million parameters for small 150x150 images, 99.99% of them in the first layer: that is the
# lecture's "too many parameters", and flattening also throws away which pixels were neighbours.
#
# The lecture's PyTorch snippet writes `nn.flatten()` and `nn.linear(...)`; PyTorch's classes are
# spelled `nn.Flatten` and `nn.Linear` (the lower-case names do not exist in `torch.nn`).

# %%
erratum("000, 'Why not MLP?' code", "`nn.flatten()` and `nn.linear(?, 128)`",
        "`nn.Flatten()` and `nn.Linear(67500, 128)`",
        "torch.nn has no lower-case `flatten`/`linear` classes, and the '?' is 150·150·3 = 67,500.")
print(f"share of the params in the first layer: {mlp.layers[1].params / mlp.total_params:.4%}")

# %% [markdown]
# ## 2. Convolutional layer
#
# ### Sobel edge detector (section "Reference: Sobel Edge Detector")
#
# The lecture's two fixed filters, Gx = [[-1,0,+1],[-2,0,+2],[-1,0,+1]] and
# Gy = [[+1,+2,+1],[0,0,0],[-1,-2,-1]], loaded into a `Conv2D`. On a small image that is dark on
# the left and bright on the right, Gx answers along the vertical edge and Gy stays silent.

# %%
GX = "-1,0,1; -2,0,2; -1,0,1"
GY = "1,2,1; 0,0,0; -1,-2,-1"
step = np.array([[0, 0, 0, 9, 9, 9]] * 5, dtype=np.float32)
gx = values("conv3-1", step, kernel=GX)
gy = values("conv3-1", step, kernel=GY)
print(gx, gy, sep="\n\n")
check("Sobel Gx on a vertical step 0 -> 9: columns 0, 36, 36, 0", gx, np.array([[0, 36, 36, 0]] * 3))
check("Sobel Gy on the same image: all zero", gy, np.zeros((3, 4)))

# %% [markdown]
# The same pair on a real image (a handwritten digit from the bundled data set), with
# `kerascnn visualize edges`:

# %%
picture("kerascnn visualize edges --index 3", "edges.png")

# %% [markdown]
# ### One filter, many filters (section "Convolution Layer")
#
# A 5x5 filter spans the full depth of a 32x32x3 image (5·5·3 = 75 weights and a bias). Sliding
# it over every position where it fits gives a 28x28 activation map; a second filter gives a
# second map, so the number of filters is the depth of the next volume.

# %%
one = kerascnn.analyze("conv5-1", input_shape=(32, 32, 3))
two = kerascnn.analyze("conv5-2", input_shape=(32, 32, 3))
check("one 5x5x3 filter on 32x32x3: activation map", one.output_shape, (28, 28, 1))
check("weights of one 5x5x3 filter + bias", one.total_params, 5 * 5 * 3 + 1)
check("two filters: two maps", two.output_shape, (28, 28, 2))

# %% [markdown]
# ### Cross-correlation with two input channels (D2L Fig. 7.4.1, shown in the lecture)
#
# Each input channel is correlated with its own kernel channel and the results are added:

# %%
x2 = "0,1,2; 3,4,5; 6,7,8 | 1,2,3; 4,5,6; 7,8,9"
y2 = values("conv2-1", x2, kernel="0,1; 2,3 | 1,2; 3,4")
print(y2)
check("two-channel cross-correlation (D2L Fig. 7.4.1)", y2, np.array([[56, 72], [104, 120]]))

# %% [markdown]
# ### Spatial arrangement: the output-size formula (section "Spatial arrangement")
#
# With input size W, receptive field (filter) size F, stride S and zero padding P, the output is
# (W − F + 2P)/S + 1. For a rectangular input and kernel the lecture writes
# (OH, OW) = ((W − FH + 2P)/S + 1, (W − FW + 2P)/S + 1): **both** rows use W. The height must use
# the input height H. A 32x64 input (H = 32, W = 64) with a 3x5 kernel shows the difference:

# %%
rect = kerascnn.analyze("conv3x5-8", input_shape=(32, 64, 1))
from kerascnn.analysis import conv_output_size

oh, ow = conv_output_size(32, 3)[0], conv_output_size(64, 5)[0]
check("OH = (H - FH + 2P)/S + 1 = (32 - 3)/1 + 1", oh, 30)
check("OW = (W - FW + 2P)/S + 1 = (64 - 5)/1 + 1", ow, 60)
check("conv3x5 on 32x64 (Keras's own shape)", rect.output_shape, (30, 60, 8))
erratum("000, 'Convolutional Layer - Spatial arrangement'",
        "OH = (W − FH + 2P)/S + 1 for the height",
        "OH = (H − FH + 2P)/S + 1 = 30 for a 32x64 input and a 3x5 kernel (the lecture's formula gives 62)",
        "the output height depends on the input height; W is the width.")
check("what the lecture's height formula would give: (64 - 3)/1 + 1", (64 - 3) // 1 + 1, 62)

# %% [markdown]
# **Stride** (D2L Fig. 7.3.3, strides of 3 for the height and 2 for the width): the 3x3 input
# 0..8 padded by one, the kernel [[0,1],[2,3]]. The output is [[0, 8], [6, 8]]. kerascnn also
# notes that the width does not divide evenly, (3 − 2 + 2)/2 + 1 = 2.5, floored to 2: the
# PyTorch code behind the figure floors it silently.

# %%
strided = values("conv2-1s3x2p1", "arange:3x3", kernel="0,1; 2,3")
print(strided)
check("strides 3 (height) and 2 (width), D2L Fig. 7.3.3", strided, np.array([[0, 8], [6, 8]]))
print(kerascnn.analyze("conv2-1s3x2p1", input_shape=(3, 3, 1)).warnings())

# %% [markdown]
# **Zero padding**: the lecture's 4x4 grid gets a border of zeros, 6x6 in all.

# %%
padded = values("zeropad1", "35,19,25,6; 13,22,16,53; 4,3,7,10; 9,8,1,3")
print(padded)
check("zero-padded 4x4 -> 6x6", padded.shape, (6, 6))
check("the border is zero, the inside unchanged", padded[1:-1, 1:-1],
      np.array([[35, 19, 25, 6], [13, 22, 16, 53], [4, 3, 7, 10], [9, 8, 1, 3]]))

# %% [markdown]
# **The one-dimensional example** (cs231n's figure in the same section): W = 5, F = 3, P = 1,
# weights [1, 0, −1] and bias 0. Stride 1 gives (5 − 3 + 2)/1 + 1 = 5 outputs, stride 2 gives
# (5 − 3 + 2)/2 + 1 = 3, and stride 3 "does not fit" because 4 is not divisible by 3. Below, an
# input row such as [1, 2, −1, 1, −3] is run as a 1x5 image with a 1x3 kernel.

# %%
row = np.array([[1, 2, -1, 1, -3]], dtype=np.float32)
s1 = values("conv1x3-1p0x1", row, kernel="1,0,-1")
s2 = values("conv1x3-1s1x2p0x1", row, kernel="1,0,-1")
print(s1, s2)
check("F=3, P=1, S=1: 5 outputs", s1.shape[1], 5)
check("F=3, P=1, S=2: 3 outputs", s2.shape[1], 3)
check("S=1 values (weights 1, 0, -1)", s1, np.array([[-2, 2, 1, 2, 1]]))
check("S=2 keeps every second one", s2, s1[:, ::2])
s3 = kerascnn.analyze("conv1x3-1s1x3p0x1", input_shape=(1, 5, 1))
check("S=3 does not fit: flagged", s3.layers[0].fits, False)
print(s3.warnings())

# %% [markdown]
# **Let's Check!** (same section): a 32x32x3 input, ten 5x5x3 filters, stride 1, padding 2.

# %%
lets_check = kerascnn.analyze("conv5-10s1p2", input_shape=(32, 32, 3))
show(lets_check)
check("(32 - 5 + 2*2)/1 + 1", lets_check.output_shape[0], 32)
check("output volume", lets_check.output_shape, (32, 32, 10))

# %% [markdown]
# ### Feature map and receptive field
#
# The receptive field of a unit is the input region its value depends on. Each 5x5 unit above sees
# 5x5 pixels. In the lectures' MNIST convnet (3x3 convolution, 2x2 pool, 3x3 convolution) a unit of
# the second convolution sees 8x8 input pixels: 3, then 4 after the pool, then 4 + (3 − 1)·2 = 8,
# because the pool doubled the step (the "jump") between neighbouring units. The square below is
# drawn by `kerascnn visualize receptive-field`:

# %%
convnet_r = kerascnn.analyze("convnet")
check("receptive fields conv, pool, conv in the convnet", [l.receptive_field for l in convnet_r.layers[:3]], [3, 4, 8])
picture("kerascnn visualize receptive-field convnet --layer conv2d_1", "rf.png")

# %% [markdown]
# ## 3. Pooling layer
#
# Max pooling with a 2x2 window (D2L Fig. 7.5.1): the first output is max(0, 1, 3, 4) = 4. With
# stride 1 on the 3x3 input 0..8 the whole output is [[4, 5], [7, 8]]; the pooling layer has no
# parameters.

# %%
pooled = values("maxpool2s1", "arange:3x3")
print(pooled)
check("max(0, 1, 3, 4)", pooled[0, 0], 4)
check("2x2 max pooling, stride 1, of 0..8", pooled, np.array([[4, 5], [7, 8]]))
check("pooling parameters", kerascnn.analyze("maxpool2s1", input_shape=(3, 3, 1)).total_params, 0)
avg = values("avgpool2s1", "arange:3x3")
check("average pooling of the same window: (0+1+3+4)/4", avg[0, 0], 2.0)

# %% [markdown]
# ## 4. Other techniques: batch normalization and dropout
#
# Batch normalization learns a scale and a shift per channel (2C trainable numbers) and keeps a
# moving mean and variance (2C more, not trained); dropout has no parameters.

# %%
bn = kerascnn.analyze("conv3-64p1, bn, relu, dropout0.5", input_shape=(32, 32, 3))
show(bn)
check("BatchNorm over 64 channels: params", bn.layers[1].params, 4 * 64)
check("BatchNorm trainable (gamma, beta)", bn.layers[1].trainable_params, 2 * 64)
check("Dropout params", bn.layers[3].params, 0)

# %% [markdown]
# ## 5. Case study: modern CNNs
#
# ### LeNet-5
#
# The lecture cites LeCun et al., "Gradient-Based Learning Applied to Document Recognition", as
# 1995. That paper appeared in the Proceedings of the IEEE in **1998** (kerascnn's registry
# records it so).

# %%
cfg = kerascnn.registry.model_cfg("lenet5")
check("LeNet-5 paper year (registry)", cfg.year, 1998)
erratum("000, 'LeNet-5' slide source", "the paper dated 1995",
        "1998 (Proc. IEEE 86(11))", "the 1995 papers by LeCun et al. are other, earlier reports.")
lenet = kerascnn.build("lenet5")
lenet_r = kerascnn.analyze(lenet)
show(lenet_r)
check("LeNet-5 params (Keras count_params)", lenet.count_params(), 61_706)
check("C1 maps", lenet_r.layers[0].output_shape, (28, 28, 6))
check("C3 maps", lenet_r.layers[2].output_shape, (10, 10, 16))
draw(lenet_r, "LeNet-5 at 28x28x1")

# %% [markdown]
# ### The missing ingredients: data and hardware
#
# ImageNet brought about a million labelled images (CIFAR-10 has 60,000), at 224x224 pixels:
# the input the zoo's ImageNet models are registered with.

# %%
for name in ("vgg16", "resnet18", "googlenet"):
    cfg_i = kerascnn.registry.model_cfg(name)
    check(f"{name}: default input and classes (ImageNet)", (cfg_i.default_input, cfg_i.num_classes), ((224, 224, 3), 1000))

# %% [markdown]
# ### AlexNet
#
# Deeper than LeNet, ReLU instead of sigmoid, and trained split over two GPUs: conv2, conv4 and
# conv5 see only the half of the channels on their own GPU (`-o grouped=true`).

# %%
alexnet = kerascnn.build("alexnet")
alex_r = kerascnn.analyze(alexnet)
grouped = kerascnn.analyze("alexnet", grouped=True)
check("AlexNet params (Keras)", alexnet.count_params(), 62_378_344)
check("AlexNet, two-GPU grouped convolutions", grouped.total_params, 60_965_224)
check("AlexNet multiply-adds, in G (published 1.14 G)", round(alex_r.macs / 1e9, 2), 1.14)
check("AlexNet pool1: overlapping 3x3 stride-2 windows, 55 -> 27", alex_r.layers[1].output_shape, (27, 27, 96))
print(f"{alex_r.param_bytes / 2**20:.1f} MiB of float32 weights")
draw(alex_r, "AlexNet at 227x227x3")
del alexnet

# %% [markdown]
# ### VGG: two 3x3 convolutions instead of one 5x5
#
# The lecture's slide: a 5x5 convolution from C to C channels costs 25C² parameters and 25C²HW
# multiply-adds; two 3x3 convolutions cost 18C² and 18C²HW and see the same 5x5 region. With
# C = 64 on a 32x32 map (no biases, as the slide counts):

# %%
C, H = 64, 32
five = kerascnn.analyze(f"conv5-{C}p2nb", input_shape=(H, H, C))
two3 = kerascnn.analyze(f"2*conv3-{C}p1nb", input_shape=(H, H, C))
check("one 5x5: 25 C^2 params", five.total_params, 25 * C**2)
check("two 3x3: 18 C^2 params", two3.total_params, 18 * C**2)
check("one 5x5: 25 C^2 H W multiply-adds", five.macs, 25 * C**2 * H * H)
check("two 3x3: 18 C^2 H W multiply-adds", two3.macs, 18 * C**2 * H * H)
check("the same receptive field", (five.receptive_field, two3.receptive_field), (5, 5))

# %% [markdown]
# The slide labels 25C²HW as "FLOPs"; it counts multiply-adds. In floating-point operations a
# multiply-add is two, so the 5x5 layer costs 2·25C²HW FLOPs. The comparison (25 vs 18) is the
# same either way.
#
# VGG-16 follows the design rules (3x3 stride-1 convolutions, 2x2 stride-2 pools, channels doubled
# after each pool):

# %%
vgg16 = kerascnn.build("vgg16")
vgg_r = kerascnn.analyze(vgg16)
check("VGG-16 params (Keras)", vgg16.count_params(), 138_357_544)
check("VGG-16 multiply-adds, in G (published 15.47 G)", round(vgg_r.macs / 1e9, 2), 15.47)
shapes = [vgg_r.input_shape] + [l.output_shape for l in vgg_r.layers]
keeps = [shapes[i][:2] == shapes[i + 1][:2] for i, l in enumerate(vgg_r.layers) if l.cls == "Conv2D"]
halves = [shapes[i + 1][0] * 2 == shapes[i][0] for i, l in enumerate(vgg_r.layers) if l.cls == "MaxPooling2D"]
check("all 13 convolutions keep the size (3x3, stride 1, pad 1)", (len(keeps), all(keeps)), (13, True))
check("all 5 pools halve it (2x2, stride 2)", (len(halves), all(halves)), (5, True))
pools = [i for i, l in enumerate(vgg_r.layers) if l.cls == "MaxPooling2D"]
check("channels after each pool: 64, 128, 256, 512, 512",
      [vgg_r.layers[i + 1].output_shape[-1] for i in [-1] + pools[:-1]], [64, 128, 256, 512, 512])
dense = sum(l.params for l in vgg_r.layers if l.cls == "Dense")
print(f"the three dense layers hold {dense:,} params, {dense / vgg_r.total_params:.0%} of VGG-16")
draw(vgg_r, "VGG-16 at 224x224x3")
del vgg16

# %% [markdown]
# ### GoogLeNet and Network in Network
#
# The dense layers hold most of VGG's weights. NiN replaces them with 1x1 convolutions and a
# global average pooling, and GoogLeNet's Inception block runs 1x1, 3x3, 5x5 and pooling paths
# side by side, using 1x1 convolutions to shrink the channels first. Inception (3a) on a 28x28x192
# input (GoogLeNet paper, Table 1):

# %%
incept = kerascnn.analyze("inception64-96-128-16-32-32", input_shape=(28, 28, 192))
show(incept)
check("Inception 3a output channels 64+128+32+32", incept.output_shape, (28, 28, 256))
check("Inception 3a params", incept.total_params, 163_696)
googlenet = kerascnn.build("googlenet")
goog_r = kerascnn.analyze(googlenet)
check("GoogLeNet params (Keras)", googlenet.count_params(), 6_998_552)
check("NiN params", kerascnn.analyze("nin").total_params, 7_439_608)
draw(goog_r, "GoogLeNet at 224x224x3 (each Inception block one box)")
del googlenet

# %% [markdown]
# ### ResNet
#
# A residual block learns g(x) = f(x) − x and adds x back. With all-ones 3x3 kernels on a ones
# input, the block's convolution gives 4 in the corners, 6 on the edges and 9 inside; adding the
# shortcut gives one more everywhere:

# %%
ones = np.ones((4, 4), np.float32)
fx = values("conv3-1p1", ones)
res = values("res(conv3-1p1)", ones)
print(res)
check("residual block output = f(x) + x", res, fx + ones)
resnet18 = kerascnn.build("resnet18")
res_r = kerascnn.analyze(resnet18)
check("ResNet-18 params (Keras)", resnet18.count_params(), 11_699_112)
check("ResNet-18 trainable params", res_r.trainable_params, 11_689_512)
check("ResNet-18 multiply-adds, in G (published 1.81 G)", round(res_r.macs / 1e9, 2), 1.81)
draw(res_r, "ResNet-18 at 224x224x3 (each residual block one box)")
del resnet18

# %%
done()

# %% [markdown]
# ## Training with the Python API
#
# The lecture's assignment trains a small CNN with convolution, max pooling and batch
# normalization. The cells below train LeNet-5 in its modern form (ReLU, max pooling, BatchNorm
# after each convolution) on the bundled handwritten digits for a few epochs with kerascnn's
# Python API, then show the training curves and evaluate it on the held-out split (about 96%
# after 5 epochs here).

# %% tags=["train-api"]
run = kerascnn.train("lenet5", model_options={"variant": "modern", "batch_norm": True}, epochs=5,
                     run_dir=str(WORK / "lenet5"), seed=1, quiet=True)
last = run.history[-1]
print(f"validation accuracy after {len(run.history)} epochs: {last.val_accuracy:.3f}")

# %% tags=["train-api"]
from IPython.display import Image

Image(filename=str(Path(run.dir) / "curves.png"))

# %% tags=["train-api"]
ev = kerascnn.evaluate(run)
print(f"test accuracy {ev.accuracy:.3f}")
assert ev.accuracy > 0.8
