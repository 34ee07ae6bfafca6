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
# # Lecture 4 companion: CNN basics, spatial dimensions and 3x3 stacks
#
# Follows `shared/lectures/004_e9c0f9c2115321e3.txt` (the "Deep Into Deep" CNN basics lecture)
# in the order of its contents: 1. an image is a large input, 2.–3. local processing and what a
# convolution is, 4. the convolution layer, 5. receptive fields and their hierarchy, 6. a closer
# look at spatial dimensions (and three 3x3 layers against one 7x7), 9. convolution as a matrix
# multiplication, 11. FC vs convolution, 12. pooling and its gradient. Every number is computed
# with kerascnn and asserted; one slide's arithmetic is corrected.

# %%
import numpy as np

import kerascnn
from companion import check, cli, done, erratum, values

# %% [markdown]
# ## 1. An image is a large input
#
# 1024 pixels wide, 1024 high, 3 channels: 3,145,728 input values for one image.

# %%
big = kerascnn.analyze("flatten", input_shape=(1024, 1024, 3))
check("3 * 1024 * 1024", big.output_shape[0], 3_145_728)

# %% [markdown]
# ## 2.–3. Local processing: parameter sharing and sparse connections
#
# An MLP (or fully connected layer) first stretches the image into a vector. The slide writes
# "32 × 32 × 2 image → stretch to 3072 × 1": but 32·32·2 = 2,048. The 3,072 belongs to a 32x32
# image with **3** channels (the 32x32x3 image of the next slides):

# %%
two = kerascnn.analyze("flatten", input_shape=(32, 32, 2))
three = kerascnn.analyze("flatten", input_shape=(32, 32, 3))
check("32x32x2 stretched", two.output_shape[0], 2048)
check("32x32x3 stretched", three.output_shape[0], 3072)
erratum("004, '3. What is Convolution?' (MLP or FC Layer)", "\"32 × 32 × 2 image → stretch to 3072 × 1\"",
        "32 × 32 × 3 → 3072 × 1 (a 32 × 32 × 2 image stretches to 2048 × 1)",
        "the number of values is the product of height, width and channels.")

# %% [markdown]
# Why local processing pays: mapping a 32x32x3 image to 28x28x6 with a fully connected layer
# needs a weight for every (input, output) pair; six shared 5x5x3 filters need 456 numbers.

# %%
fc = kerascnn.analyze(f"flatten, fc{28 * 28 * 6}", input_shape=(32, 32, 3))
conv = kerascnn.analyze("conv5-6", input_shape=(32, 32, 3))
check("fully connected 3072 -> 4704: weights + biases", fc.total_params, 3072 * 4704 + 4704)
check("six 5x5x3 filters, shared over all positions", conv.total_params, 6 * 75 + 6)
print(f"{fc.total_params / conv.total_params:,.0f} times fewer parameters for the same output size")

# %% [markdown]
# ## 4. The convolution layer
#
# The 32x32x3 image keeps its spatial structure and a 5x5x3 filter slides over it. The filter
# must have as many channels as the image: Keras sizes it from the input, and a kernel with the
# wrong depth is refused:

# %%
check("a 5x5 filter over 32x32x3 has 5x5x3 weights", kerascnn.analyze("conv5-1", input_shape=(32, 32, 3)).total_params - 1, 75)
out = cli('kerascnn values conv5-1 --input arange:6x6x3 --kernel "1,1,1,1,1;1,1,1,1,1;1,1,1,1,1;1,1,1,1,1;1,1,1,1,1"')
check("a single-channel 5x5 kernel on a 3-channel input is refused", out.startswith("Error:"), True)

# %% [markdown]
# ## 5. Receptive fields, and their hierarchy
#
# A 5x5x1 filter: each output sees 5x5 input pixels; a second 5x5 layer on top sees 9x9. In a
# deep network the field grows layer by layer, which is why later layers respond to larger
# patterns (the Zeiler & Fergus visualisations the lecture cites). AlexNet's fields:

# %%
check("5x5 then 5x5: fields 5 and 9", [l.receptive_field for l in kerascnn.analyze("2*conv5-1", input_shape=(32, 32, 1)).layers],
      [5, 9])
alex = kerascnn.analyze("alexnet")
fields = {l.name: l.receptive_field for l in alex.layers if len(l.output_shape) == 3}
print(fields)
check("AlexNet conv1 (11x11, stride 4)", fields["conv1"], 11)
check("pool1 (3x3/2 after a jump of 4): 11 + 2*4", fields["pool1"], 19)
check("conv5's units see", fields["conv5"], 163)

# %% [markdown]
# ## 6. A closer look at spatial dimensions
#
# 7x7 input, 3x3 filter: stride 1 gives 5x5 and stride 2 gives 3x3; in general (N − F)/S + 1.
# With one pixel of padding a 3x3 filter at stride 1 keeps N x N; with P pixels,
# (N − F + 2P)/S + 1.

# %%
check("(7 - 3)/1 + 1", kerascnn.analyze("conv3-1", input_shape=(7, 7, 1)).output_shape[:2], (5, 5))
check("(7 - 3)/2 + 1", kerascnn.analyze("conv3-1s2", input_shape=(7, 7, 1)).output_shape[:2], (3, 3))
check("3x3, stride 1, pad 1 keeps N for N = 5..9",
      [kerascnn.analyze("conv3-1p1", input_shape=(n, n, 1)).output_shape[0] for n in range(5, 10)], list(range(5, 10)))
check("(N - F + 2P)/S + 1 with N=32, F=5, P=2, S=1", kerascnn.analyze("conv5-1p2", input_shape=(32, 32, 1)).output_shape[0], 32)

# %% [markdown]
# ### Three 3x3 layers against one 7x7 layer
#
# Both see a 7x7 region ("receptive fields are equal"), but with C channels in and out the three
# 3x3 layers need 3 × C × (3 × 3 × C) = 27C² weights and the 7x7 layer C × (7 × 7 × C) = 49C²
# (no biases):

# %%
for C in (16, 64, 256):
    s3 = kerascnn.analyze(f"3*conv3-{C}p1nb", input_shape=(28, 28, C))
    s7 = kerascnn.analyze(f"conv7-{C}p3nb", input_shape=(28, 28, C))
    check(f"C={C}: three 3x3 = 27 C^2", s3.total_params, 27 * C**2)
    check(f"C={C}: one 7x7 = 49 C^2", s7.total_params, 49 * C**2)
    check(f"C={C}: both see 7x7", (s3.receptive_field, s7.receptive_field), (7, 7))

# %% [markdown]
# ## 9. Convolution as a matrix multiplication
#
# Cut every 3x3x3 window of the input into a row (im2col) and every filter into a column: the
# convolution is one matrix product. The values agree with the Keras layer's:

# %%
rng = np.random.default_rng(0)
x = rng.integers(-4, 5, (5, 5, 3)).astype(np.float32)
k = rng.integers(-2, 3, (3, 3, 3, 2)).astype(np.float32)
cols = np.stack([x[i:i + 3, j:j + 3, :].reshape(-1) for i in range(3) for j in range(3)])   # 9 windows x 27
check("im2col matrix: 9 windows x 27 values", cols.shape, (9, 27))
check("conv == (windows x 27) @ (27 x filters)", values("conv3-2", x, kernel=k), (cols @ k.reshape(27, 2)).reshape(3, 3, 2))

# %% [markdown]
# ## 11.–12. FC layer vs convolution layer, and pooling
#
# Pooling makes the maps smaller and works on every activation map separately. Max pooling with
# 2x2 filters and stride 2 on the lectures' 4x4 example gives 6, 8 / 3, 4:

# %%
grid = "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4"
pooled = values("maxpool2", grid)
check("max pool 2x2, stride 2", pooled, np.array([[6, 8], [3, 4]]))
two_maps = values("maxpool2", "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4 | 4,3,2,1; 8,7,6,5; 0,1,2,3; 4,3,2,1")
check("each map pooled on its own (a second, mirrored map)", two_maps[..., 1], np.array([[8, 6], [4, 3]]))

# %% [markdown]
# **How to compute the gradient of max pooling?** (the lecture's closing question). Each output is
# a copy of one input, the window's maximum, so the gradient flows back to that input alone and is
# zero for the other three. Measured through the Keras layer with TensorFlow's automatic
# differentiation:

# %%
import tensorflow as tf

from kerascnn.keras_build import build_sequential
from kerascnn.speclang import parse
from kerascnn.values import parse_input

pool = build_sequential(parse("maxpool2"), (4, 4, 1))
xin = tf.constant(parse_input(grid)[None])
with tf.GradientTape() as tape:
    tape.watch(xin)
    y = tf.reduce_sum(pool(xin))
grad = tape.gradient(y, xin).numpy()[0, ..., 0]
print(grad)
mask = np.zeros((4, 4))
mask[1, 1] = mask[1, 3] = mask[2, 0] = mask[3, 3] = 1   # where 6, 8, 3 and 4 are
check("d(sum of outputs)/d(input): 1 at each window's maximum, 0 elsewhere", grad, mask)

# %% [markdown]
# Average pooling, by contrast, spreads each output's gradient evenly: 1/4 to every input of its
# 2x2 window.

# %%
avg = build_sequential(parse("avgpool2"), (4, 4, 1))
with tf.GradientTape() as tape:
    tape.watch(xin)
    y = tf.reduce_sum(avg(xin))
check("average pooling gradient: 1/4 everywhere", tape.gradient(y, xin).numpy()[0, ..., 0], np.full((4, 4), 0.25))

# %%
done()
