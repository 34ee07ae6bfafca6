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
# # Lecture 2 companion: a CNN with Keras
#
# Follows `shared/lectures/002_23f0c0ee815f1b2f.txt` ("Lecture 4. Introduction to Convolutional
# Neural Networks") in order: 4.1 why images need convolutions, 4.2 the convolution operation
# (the worked example, edge detection, filters over colour volumes, padding, strides, max
# pooling and the output-size formula), 4.3 a CNN architecture and 4.4 the Keras model whose
# `model.summary()` reports 123,690 parameters. Every number is computed with kerascnn and
# asserted; the last section trains the model.

# %%
from pathlib import Path

import numpy as np

import kerascnn
from companion import WORK, check, done, draw, show, values

# %% [markdown]
# ## 4.1 Images are large inputs
#
# A 64x64 colour image has 12,288 input units and a 1000x1000 colour image 3,000,000. A dense
# layer of only 1,000 hidden units on the larger one would hold three billion weights, about
# 11 GiB in float32: the memory problem the lecture mentions.

# %%
small = kerascnn.analyze("flatten", input_shape=(64, 64, 3))
large = kerascnn.analyze("flatten, fc1000", input_shape=(1000, 1000, 3))
check("64*64 colour image: input units", small.output_shape[0], 12_288)
check("1000*1000 colour image: input units", large.layers[0].output_shape[0], 3_000_000)
check("a 1,000-unit dense layer on it: weights + biases", large.total_params, 3_000_000 * 1000 + 1000)
print(f"{large.param_bytes / 2**30:.2f} GiB of float32 weights")

# %% [markdown]
# ## 4.2 The convolution operation
#
# The lecture's example slides the 3x3 kernel [[0,1,2],[2,2,0],[0,1,2]] over a 5x5 input (the blue
# grid) and gets a 3x3 output (the green grid). With the input of the convolution-arithmetic
# guide that the figure comes from (Dumoulin & Visin), the output is:

# %%
blue = "3,3,2,1,0; 0,0,1,3,1; 3,1,2,2,3; 2,0,0,2,2; 2,0,0,0,1"
green = values("conv3-1", blue, kernel="0,1,2; 2,2,0; 0,1,2")
print(green)
check("5x5 input, 3x3 kernel -> 3x3 output", green.shape, (3, 3))
check("the output values", green, np.array([[12, 12, 17], [10, 17, 19], [9, 6, 14]]))
xg = np.array([[float(v) for v in r.split(",")] for r in blue.split(";")])
kg = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]])
check("top-left value by hand: sum(window * kernel)", green[0, 0], float((xg[:3, :3] * kg).sum()))

# %% [markdown]
# ### Edge detection
#
# A fixed kernel detects vertical edges: on an image that is bright (10) on the left and dark
# (0) on the right, the kernel [[1,0,−1],[1,0,−1],[1,0,−1]] responds only where the brightness
# changes. Its transpose finds horizontal edges. (This is the standard example of the course the
# lecture draws on.)

# %%
vertical = np.array([[10, 10, 10, 0, 0, 0]] * 6, np.float32)
v_edges = values("conv3-1", vertical, kernel="1,0,-1; 1,0,-1; 1,0,-1")
h_edges = values("conv3-1", vertical.T, kernel="1,1,1; 0,0,0; -1,-1,-1")
print(v_edges)
check("vertical edge response", v_edges, np.array([[0, 30, 30, 0]] * 4))
check("the transposed kernel on the transposed image", h_edges, v_edges.T)

# %% [markdown]
# In a CNN these kernel values are not given: they are weights the network learns.
#
# ### Filters over a colour volume
#
# A 6x6x3 input and one 3x3x3 filter (its depth matches the input's) give one 4x4 feature map;
# two filters give two.

# %%
f1 = kerascnn.analyze("conv3-1", input_shape=(6, 6, 3))
f2 = kerascnn.analyze("conv3-2", input_shape=(6, 6, 3))
check("6x6x3 * one 3x3x3 filter", f1.output_shape, (4, 4, 1))
check("6x6x3 * two 3x3x3 filters", f2.output_shape, (4, 4, 2))
check("params of two filters: 2 x (3*3*3 + 1)", f2.total_params, 2 * (27 + 1))
ones = values("conv3-1", np.ones((6, 6, 3), np.float32))
check("all-ones filter on an all-ones volume: 27 everywhere", ones, np.full((4, 4), 27))

# %% [markdown]
# ### Padding
#
# "valid" adds no padding; "same" pads so that the output keeps the input size (at stride 1).

# %%
valid = kerascnn.analyze("conv3-1valid", input_shape=(6, 6, 1))
same = kerascnn.analyze("conv3-1same", input_shape=(6, 6, 1))
check("valid: 6 -> 4", valid.output_shape[:2], (4, 4))
check("same: 6 -> 6", same.output_shape[:2], (6, 6))
padded_sum = values("conv3-1same", np.ones((6, 6), np.float32))
check("'same' pads zeros: corner 4, edge 6, inside 9", padded_sum[[0, 0, 2], [0, 2, 2]], np.array([4, 6, 9]))

# %% [markdown]
# ### Strides and max pooling
#
# A stride of 2 downsamples the feature map by two in width and height; so does the usual 2x2 max
# pooling with stride 2, which has no weights.

# %%
s2 = kerascnn.analyze("conv3-8same, maxpool2, conv3-8s2same", input_shape=(32, 32, 1))
check("3x3 'same' conv keeps 32, 2x2 pool halves to 16, stride-2 conv halves to 8",
      [l.output_shape[:2] for l in s2.layers], [(32, 32), (16, 16), (8, 8)])
check("max pooling params", s2.layers[1].params, 0)
check("2x2 max pool of 1 2 / 3 4 ...", values("maxpool2", "1,2,5,6; 3,4,7,8; 0,0,1,1; 0,9,1,0"),
      np.array([[4, 8], [9, 1]]))

# %% [markdown]
# The lecture credits pooling with fewer weights and faster computation. The pooling layer itself
# has none; it shrinks the maps, so every later layer is cheaper. Without the second pool of the
# network below (section 4.4), its first dense layer would see 11·11·64 = 7,744 inputs instead of
# 1,600:

# %%
with_pool = kerascnn.analyze("convnet")
no_pool = kerascnn.analyze("conv3-32,relu, maxpool2, conv3-64,relu, flatten, fc64,relu, fc32,relu, fc10,softmax",
                           input_shape=(28, 28, 1))
check("first dense layer without the second pool: 7744*64 + 64", no_pool.layers[6].params, 7744 * 64 + 64)
print(f"whole network: {no_pool.total_params:,} params without the pool vs {with_pool.total_params:,} with it")

# %% [markdown]
# ### The output-size formula
#
# (W − F + 2P)/S + 1: a 7x7 input with a 3x3 filter, stride 1 and pad 0 gives 5x5. The lecture's
# second exercise, a 10x10 input with a 3x3 filter, stride 2 and pad 0, is (10 − 3)/2 + 1 = 4.5:
# it does not fit. Keras floors it to 4 (the last column and row of the input are never used):

# %%
check("7x7, F=3, S=1, P=0", kerascnn.analyze("conv3-1", input_shape=(7, 7, 1)).output_shape[:2], (5, 5))
ten = kerascnn.analyze("conv3-1s2", input_shape=(10, 10, 1))
check("10x10, F=3, S=2, P=0: 4.5 does not fit", ten.layers[0].fits, False)
check("... Keras's output is 4x4", ten.output_shape[:2], (4, 4))
print(ten.warnings())

# %% [markdown]
# ## 4.3 An example architecture, 4.4 the CNN in Keras
#
# Convolution (+ ReLU) and pooling stacked twice, the feature maps shrinking while their depth
# grows, then dense layers and a 10-way softmax output. The lecture's Keras code, written for
# Keras 3 (`keras.Input` instead of the old `input_shape=` argument):

# %%
import keras
from keras import layers

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dense(32, activation="relu"),
    layers.Dense(10, activation="softmax"),
], name="lecture_cnn")
model.summary()

# %% [markdown]
# The lecture's table, row by row (output shape and `Param #`), checked against Keras. Keras 3
# numbers its automatic layer names from 0 (`conv2d`, `conv2d_1`) where the lecture's older Keras
# started at 1 (`conv2d_1`, `conv2d_2`); the rows are the same.

# %%
rows = [(tuple(l.output.shape[1:]), l.count_params()) for l in model.layers]
lecture_rows = [((26, 26, 32), 320), ((13, 13, 32), 0), ((11, 11, 64), 18_496), ((5, 5, 64), 0),
                ((1600,), 0), ((64,), 102_464), ((32,), 2_080), ((10,), 330)]
for (shape, params), (want_shape, want_params), layer in zip(rows, lecture_rows, model.layers):
    check(f"{layer.name}: output shape", shape, want_shape)
    check(f"{layer.name}: Param #", params, want_params)
check("Total params", model.count_params(), 123_690)
check("Trainable params", sum(int(np.prod(w.shape)) for w in model.trainable_weights), 123_690)
check("Non-trainable params", sum(int(np.prod(w.shape)) for w in model.non_trainable_weights), 0)

# %% [markdown]
# The lecture works out the first row (3·3 = 9 weights per filter, 32 filters: 288 weights and 32
# biases, 320) and leaves the rest as an exercise. kerascnn's arithmetic gives every row from the
# formulas, next to Keras's own count (`ok` where they agree):

# %%
report = kerascnn.analyze(model)
show(report)
check("the lecture's conv2d_1: 3*3*1 = 9 weights x 32 filters + 32 biases", report.layers[0].params, 9 * 32 + 32)
check("second conv: 3*3*32*64 + 64", report.layers[2].params, 3 * 3 * 32 * 64 + 64)
check("first dense: 1600*64 + 64", report.layers[5].params, 1600 * 64 + 64)
check("second dense: 64*32 + 32", report.layers[6].params, 64 * 32 + 32)
check("output layer: 32*10 + 10", report.layers[7].params, 32 * 10 + 10)
check("Keras agrees on every layer", report.keras_agrees, True)
check("second pool: 11 -> 5.5 does not fit, floored to 5", report.layers[3].fits, False)

# %% [markdown]
# kerascnn's zoo has this network as `convnet` (same layers, same counts), and `kerascnn summary
# convnet` prints both tables side by side:

# %%
zoo = kerascnn.analyze("convnet")
check("kerascnn's convnet: the same params", zoo.total_params, model.count_params())
check("multiply-adds per image", zoo.macs, 2_529_728)
draw(report, "The lecture's Keras CNN on 28x28x1")

# %%
done()

# %% [markdown]
# ## Training with the Python API
#
# The lecture stops at `model.summary()`; the network is the classic MNIST classifier. Here it is
# trained for a few epochs on the handwritten digits bundled with scikit-learn (1,797 real 8x8
# images, upscaled to 28x28), evaluated on the held-out split, used to classify two sample images
# and exported as a TensorFlow SavedModel.

# %% tags=["train-api"]
run = kerascnn.train("convnet", epochs=10, run_dir=str(WORK / "convnet"), seed=1, quiet=True)
print(f"validation accuracy after {len(run.history)} epochs: {run.history[-1].val_accuracy:.3f}")

# %% tags=["train-api"]
from IPython.display import Image

Image(filename=str(Path(run.dir) / "curves.png"))

# %% tags=["train-api"]
ev = kerascnn.evaluate(run)
print(f"test accuracy {ev.accuracy:.3f}")
assert ev.accuracy > 0.5
preds = kerascnn.predict(run, ["../docs/samples/digit-3.png", "../docs/samples/digit-7.png"], top_k=3)
preds

# %% tags=["train-api"]
exported = kerascnn.export(run, out=str(WORK / "convnet-savedmodel"))
exported
