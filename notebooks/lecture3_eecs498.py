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
# # Lecture 3 companion: convolutional networks (EECS 498-007, lecture 7 notes)
#
# Follows `shared/lectures/003_9da8e51d4797e424.txt` ("Lecture 7. Convolutional Network") in
# order: fully connected vs convolution layers, stacking convolutions, spatial dimensions and
# padding, receptive fields, strided convolution with the 760-parameter / 768K multiply-add
# example, 1x1 convolutions, pooling and LeNet-5. Every number is computed by kerascnn and
# asserted; three places where the notes are wrong are shown with the correct values.

# %%
from pathlib import Path

import numpy as np

import kerascnn
from companion import WORK, check, done, draw, erratum, show, values

# %% [markdown]
# ## Fully-connected layer
#
# The 32x32x3 image becomes a vector of 3,072 numbers before the matrix multiply.

# %%
check("32x32x3 flattened", kerascnn.analyze("flatten", input_shape=(32, 32, 3)).output_shape, (3072,))

# %% [markdown]
# ## Convolution layer
#
# The input stays a 3-D tensor. A 5x5 filter spanning the 3 channels takes, at each position, a
# dot product of 5·5·3 = 75 numbers plus a bias, and sliding it everywhere it fits gives a
# 28x28 activation map. Six filters give six maps, stacked into a 6x28x28 tensor (28x28x6 in
# Keras's channels-last order): a 28x28 grid with a 6-dimensional vector at every point.

# %%
one = kerascnn.analyze("conv5-1", input_shape=(32, 32, 3))
six = kerascnn.analyze("conv5-6", input_shape=(32, 32, 3))
check("weights of one 3x5x5 filter", one.total_params - 1, 75)
check("its activation map", one.output_shape, (28, 28, 1))
check("six filters: 28x28 grid, 6 values per point", six.output_shape, (28, 28, 6))
erratum("003, 'Convolution Layer'", "\"a 28x29 grid\" with a 6-dim vector at each point",
        "a 28x28 grid", "the map is square: (32 − 5)/1 + 1 = 28 in both directions.")

# %% [markdown]
# ### Stacking convolutions
#
# Each layer's filters produce the next layer's input. Without an activation between them,
# two convolutions are still one linear operation: a 5x5 followed by a 3x3 convolution equals a
# single 7x7 convolution whose kernel is the two kernels convolved. With all-ones kernels (the
# default of `values`) the combined 7x7 kernel counts how many paths reach each input pixel:

# %%
rng = np.random.default_rng(0)
x = rng.integers(0, 5, (12, 12)).astype(np.float32)
stacked = values("conv5-1nb, conv3-1nb", x)
k7 = np.zeros((7, 7), np.float32)
for i in range(3):
    for j in range(3):
        k7[i:i + 5, j:j + 5] += 1
single = values("conv7-1nb", x, kernel=k7[..., None, None])
check("conv5 then conv3 (no activation) == one conv7", stacked, single)
print(k7.astype(int))
stack = kerascnn.analyze("conv5-6, relu, conv3-10, relu, conv3-12", input_shape=(32, 32, 3))
check("a stack 6@5x5, 10@3x3, 12@3x3 on 32x32x3: sizes", [l.output_shape for l in stack.layers if l.cls == "Conv2D"],
      [(28, 28, 6), (26, 26, 10), (24, 24, 12)])
draw(stack, "Three stacked convolutions with ReLUs between them")

# %% [markdown]
# ## Visual viewpoint: what first-layer filters look like
#
# The notes show AlexNet's first-layer filters: 64 filters of 11x11 over RGB. In torchvision's
# AlexNet (`-o variant=torchvision`) that layer has 11·11·3·64 + 64 weights. The filters kerascnn's
# lecture convnet learned on MNIST (3x3, one channel), from `kerascnn visualize filters`:

# %%
tv = kerascnn.analyze("alexnet", variant="torchvision")
check("AlexNet conv1 (torchvision): 64 filters", tv.layers[0].output_shape[-1], 64)
check("... 11*11*3*64 + 64 params", tv.layers[0].params, 11 * 11 * 3 * 64 + 64)
from IPython.display import Image

Image(filename="../docs/images/mnist-convnet-filters.png", width=640)

# %% [markdown]
# ## Spatial dimensions and padding
#
# A 7x7 input and a 3x3 filter give 5x5: W − K + 1. With P zeros around the input: W − K + 1 + 2P,
# and P = (K − 1)/2 keeps the size ("same" padding).

# %%
check("7 - 3 + 1", kerascnn.analyze("conv3-1", input_shape=(7, 7, 1)).output_shape[0], 5)
for p in (1, 2):
    check(f"7 - 3 + 1 + 2*{p}", kerascnn.analyze(f"conv3-1p{p}", input_shape=(7, 7, 1)).output_shape[0], 5 + 2 * p)
for k in (3, 5, 7):
    check(f"K={k}, P=(K-1)/2: same size", kerascnn.analyze(f"conv{k}-1p{(k - 1) // 2}", input_shape=(7, 7, 1)).output_shape[0], 7)

# %% [markdown]
# ## Receptive fields
#
# One 3x3 layer: each output sees a 3x3 region. Three of them: 3 -> 5 -> 7, and in general
# 1 + L(K − 1) for L layers of kernel K.

# %%
three = kerascnn.analyze("3*conv3-1p1", input_shape=(32, 32, 1))
check("three 3x3 layers: 3, 5, 7", [l.receptive_field for l in three.layers], [3, 5, 7])

# %% [markdown]
# For a 1024x1024 image the notes say about 500 layers of 3x3 convolutions are needed, with the
# field growing 3x3 -> 5x5 -> 7x7 -> 9x9 -> ... -> 1024x1024. The field 1 + 2L is odd for every L,
# so it is never 1024: 511 layers give 1023, and 512 layers are the first to cover the whole image,
# with 1025. kerascnn's arithmetic on 511 and 512 stacked layers (it is pure Python: instant):

# %%
rf511 = kerascnn.analyze("511*conv3-1p1", input_shape=(1024, 1024, 1)).receptive_field
rf512 = kerascnn.analyze("512*conv3-1p1", input_shape=(1024, 1024, 1)).receptive_field
check("receptive field after 511 layers", rf511, 1023)
check("receptive field after 512 layers", rf512, 1025)
erratum("003, 'Receptive Fields'", "a field growing \"3x3 -> 5x5 -> 7x7 -> 9x9 -> ... -> 1024x1024\"",
        "1 + 2L is always odd: 1023 after 511 layers, 1025 after 512 (the first to cover 1024)",
        "each 3x3 layer adds exactly 2 to the field, so it can never equal an even size.")

# %% [markdown]
# ## Strided convolution
#
# With stride S the output is (W − K + 2P)/S + 1. When S does not divide W − K + 2P, the notes say
# the result is rounded down **or rounded**. Frameworks always round down (floor): the last rows
# and columns that a full window cannot reach are dropped. An 8x8 input, K = 3, S = 3:
# (8 − 3)/3 + 1 = 2.67. Rounding would give 3; Keras gives 2.

# %%
import keras

k_out = keras.layers.Conv2D(1, 3, strides=3)(np.zeros((1, 8, 8, 1), np.float32)).shape
s3 = kerascnn.analyze("conv3-1s3", input_shape=(8, 8, 1))
check("Keras's Conv2D(1, 3, strides=3) on 8x8", tuple(k_out[1:3]), (2, 2))
check("kerascnn's arithmetic: floored to 2 and flagged", (s3.output_shape[0], s3.layers[0].fits), (2, False))
print(s3.warnings())
erratum("003, 'Stride Convolution'", "\"when (W − K + 2P) is not divisible by S, round down or round\"",
        "always round down (floor): 2 for W = 8, K = 3, S = 3, never 3",
        "Keras, PyTorch and TensorFlow floor; a partial window at the border is never computed "
        "(kerascnn warns that such a layer does not fit).")

# %% [markdown]
# ### The convolution example
#
# Input 3x32x32, ten 5x5 filters, stride 1, pad 2: the output is 10x32x32; each filter has
# 3·5·5 + 1 = 76 parameters, 760 in all; there are 10·32·32 = 10,240 outputs, each an inner
# product of two 3x5x5 tensors (75 multiply-adds): 768K multiply-adds.

# %%
ex = kerascnn.analyze("conv5-10s1p2", input_shape=(32, 32, 3))
show(ex)
check("output volume (10x32x32, channels last)", ex.output_shape, (32, 32, 10))
check("parameters per filter", ex.total_params // 10, 76)
check("parameters", ex.total_params, 760)
check("outputs", int(np.prod(ex.output_shape)), 10_240)
check("multiply-adds: 75 x 10,240", ex.macs, 768_000)

# %% [markdown]
# ## 1x1 convolution
#
# A 1x1 filter is a linear layer applied to the feature vector at each position. Network in
# Network stacks them after a spatial convolution: conv -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv ->
# ReLU, as in the first block of kerascnn's `nin`:

# %%
nin = kerascnn.analyze("nin")
block1 = [l for l in nin.layers if l.cls == "Conv2D"][:3]
for l in block1:
    print(l.name, l.output_shape, l.params)
check("NiN block 1: 11x11/4 conv then two 1x1 convs, 96 channels each", [l.output_shape for l in block1],
      [(54, 54, 96)] * 3)
check("a 1x1 conv from 96 to 96 channels: 96*96 + 96, a dense layer's count", block1[1].params, 96 * 96 + 96)

# %% [markdown]
# (Convolutions in 1-D, for sequences, and 3-D, for volumes, follow the same arithmetic per
# axis; kerascnn covers the 2-D layers of the lectures.)
#
# ## Pooling layer
#
# Pooling downsamples without learnable parameters; its hyperparameters are the kernel size, the
# stride and the function (max or average). Kernel 2 with stride 2 makes the windows
# non-overlapping; AlexNet uses kernel 3 with stride 2, so neighbouring windows share a row or
# column. On the input 0..24:

# %%
check("2x2/2 max pool of 0..15", values("maxpool2", "arange:4x4"), np.array([[5, 7], [13, 15]]))
check("3x3/2 (overlapping) max pool of 0..24", values("maxpool3s2", "arange:5x5"), np.array([[12, 14], [22, 24]]))
alex = kerascnn.analyze("alexnet")
check("AlexNet pool1: 3x3/2 on 55x55 -> 27x27", alex.layers[1].output_shape[:2], (27, 27))
check("pooling parameters", alex.layers[1].params, 0)

# %% [markdown]
# ## LeNet-5
#
# The classic pattern is [conv, ReLU, pool] repeated, then fully connected layers. The version in
# the EECS 498 slide: 20 filters 5x5 with pad 2, 2x2 max pool, 50 filters 5x5 with pad 2, max
# pool, flatten, 500 hidden units, 10 outputs, on a 28x28 grey image:

# %%
lenet_498 = kerascnn.analyze("conv5-20p2, relu, maxpool2, conv5-50p2, relu, maxpool2, flatten, fc500, relu, fc10",
                             input_shape=(28, 28, 1))
show(lenet_498)
check("sizes 28x28x20, 14x14x20, 14x14x50, 7x7x50, 2450, 500, 10",
      [l.output_shape for l in lenet_498.layers if l.cls not in ("Activation",)],
      [(28, 28, 20), (14, 14, 20), (14, 14, 50), (7, 7, 50), (2450,), (500,), (10,)])
draw(lenet_498, "LeNet-5 as in the EECS 498 slide")

# %% [markdown]
# kerascnn's `lenet5` is the 1998 paper's (6 and 16 filters, 120 and 84 hidden units);
# `-o variant=modern` uses ReLU and max pooling, the notes' [conv, ReLU, pool] pattern:

# %%
modern = kerascnn.build("lenet5", variant="modern")
check("LeNet-5 (modern) params, Keras", modern.count_params(), 61_706)
show(kerascnn.analyze(modern))

# %%
done()

# %% [markdown]
# ## Training with the Python API
#
# LeNet-5 with the notes' [conv, ReLU, pool] pattern (`variant=modern`) trained on the bundled
# handwritten digits for 8 epochs, with its curves and its accuracy on the held-out split (about
# 98% here; the paper's sigmoid version learns far more slowly at this budget).

# %% tags=["train-api"]
run = kerascnn.train("lenet5", model_options={"variant": "modern"}, epochs=8, run_dir=str(WORK / "lenet5"),
                     seed=1, quiet=True)
print(f"validation accuracy: {run.history[-1].val_accuracy:.3f}")

# %% tags=["train-api"]
Image(filename=str(Path(run.dir) / "curves.png"))

# %% tags=["train-api"]
ev = kerascnn.evaluate(run)
print(f"test accuracy {ev.accuracy:.3f}")
assert ev.accuracy > 0.8
