"""`kerascnn values`: the numbers a layer computes on a small input (hand calculations checked)."""
from __future__ import annotations

import click

from kerascnn.commands.common import echo_json, format_option


@click.command(short_help="Run a layer spec on a small input and print the output values.")
@click.argument("model_or_spec")
@click.option("--input", "input_text", required=True, metavar="GRID|arange:HxW[xC]|FILE.npy",
              help="The input: rows separated by ';', values by ',' or spaces, channels by '|' "
                   "(e.g. \"1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4\"), arange:4x4, or an (H,W[,C]) .npy file.")
@click.option("--kernel", "kernel_text", default=None, metavar="GRID|FILE.npy",
              help="Kernel of the first conv/dense layer: rows ';', input channels '|', filters '/' "
                   "(or a .npy in Keras's (F,F,C_in,K) layout). Default: all ones.")
@click.option("--bias", "bias_text", default=None, metavar="B1,B2,...",
              help="Bias of that layer (one value per filter). Default: zero.")
@click.option("--weights", "weights_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Weights from a .npz (keys LAYER/WEIGHT, e.g. conv2d/kernel) or a .keras file (by layer name).")
@click.option("--each-layer", is_flag=True, help="Print every layer's output, not only the last.")
@format_option
def values(model_or_spec, input_text, kernel_text, bias_text, weights_path, each_layer, fmt):
    """Run MODEL_OR_SPEC (a layer spec such as "maxpool2" or "conv3-1s2p1", a registered model,
    or a .keras file) on one small input and print the output, channel by channel.

    Kernels are all ones and biases zero unless --kernel/--bias/--weights say otherwise, so
    a lecture's worked example can be checked by hand:

    \b
      kerascnn values maxpool2 --input "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4"
      kerascnn values conv2-1 --input "0,1,2;3,4,5;6,7,8 | 1,2,3;4,5,6;7,8,9" \\
          --kernel "0,1;2,3 | 1,2;3,4"
    """
    from kerascnn import values as V

    x = V.parse_input(input_text)
    kernel = V.parse_kernel(kernel_text) if kernel_text else None
    bias = V.parse_bias(bias_text) if bias_text else None
    from kerascnn.commands.common import load_tensorflow

    load_tensorflow()   # quietly, after the inputs are checked
    outs, notes = V.run_values(model_or_spec, x, kernel, bias, weights_path, each_layer)
    if fmt == "json":
        echo_json({"input_shape": list(outs.input_shape), "weights": notes,
                   "layers": [{"name": n, "class": c, "output_shape": list(y.shape), "values": V.as_lists(y)}
                              for n, c, y in outs]})
        return
    shape = "x".join(map(str, outs.input_shape))
    click.echo(f"Input {shape}" + (f"; {'; '.join(notes)}" if notes else ""))
    for n, c, y in outs:
        click.echo(V.format_output(n, c, y))
