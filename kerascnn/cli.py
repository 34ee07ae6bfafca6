"""The ``kerascnn`` command line: a thin click layer.

Each command lives in ``kerascnn/commands/NAME.py`` and imports TensorFlow only
inside its function body, so ``kerascnn --help`` and ``kerascnn CMD --help``
are instant. Domain errors are turned into click errors here, once:
``ConfigError`` -> usage error (exit 2), other ``KerasCNNError`` -> exit 1.
Anything unexpected becomes a one-line error too (set ``KERASCNN_DEBUG=1`` for
the traceback).
"""
from __future__ import annotations

import importlib
import importlib.util
import os

import click

from kerascnn import __version__
from kerascnn.errors import ConfigError, KerasCNNError, SpecError

# command name -> "module:attribute"; modules are imported on first use.
COMMANDS = {
    "list": "kerascnn.commands.summary:list_cmd",
    "summary": "kerascnn.commands.summary:summary",
    "train": "kerascnn.commands.train:train",
    "evaluate": "kerascnn.commands.evaluate:evaluate",
    "predict": "kerascnn.commands.predict:predict",
    "export": "kerascnn.commands.export:export",
    "bench": "kerascnn.commands.bench:bench",
    "visualize": "kerascnn.commands.visualize:visualize",
    "values": "kerascnn.commands.values:values",
}


def one_line(exc: BaseException) -> str:
    """First meaningful line of an exception's text, without ANSI escapes."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[0] if lines else exc.__class__.__name__
    return msg if len(msg) <= 400 else msg[:397] + "..."


class KerasCNNGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self.get_command(ctx, name) is not None]

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # a command not shipped in this build
                return None
            raise
        return getattr(mod, attr)

    def invoke(self, ctx):
        try:
            return self._invoke_quietly(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except SpecError as e:  # the spec is the problem, not the command line: no usage header
            err = click.ClickException(one_line(e))
            err.exit_code = 2
            raise err from None
        except ConfigError as e:
            raise click.UsageError(one_line(e), ctx=ctx) from None
        except KerasCNNError as e:
            raise click.ClickException(one_line(e)) from None
        except BrokenPipeError:  # e.g. `kerascnn list | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ctx.exit(0)
        except KeyboardInterrupt:
            raise click.Abort() from None
        except MemoryError:
            raise click.ClickException("out of memory; try a smaller --batch-size or --image-size") from None
        except Exception as e:  # last resort: never show a traceback to the user
            if os.environ.get("KERASCNN_DEBUG"):
                raise
            raise click.ClickException(
                f"{e.__class__.__name__}: {one_line(e)} (set KERASCNN_DEBUG=1 for the traceback)"
            ) from None


    def _invoke_quietly(self, ctx):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        args = list(protected) + list(ctx.args)
        needs_tf = args and args[0] in TF_COMMANDS and not ({"-h", "--help", "--no-keras"} & set(args))
        if needs_tf and _tensorflow_backend(args) and importlib.util.find_spec("tensorflow") is not None:
            from kerascnn.tfquiet import import_tensorflow

            import_tensorflow()
        return super().invoke(ctx)


def _tensorflow_backend(args) -> bool:
    """False for `bench --backend jax|torch` (that run never needs TensorFlow)."""
    if args[0] != "bench":
        return True
    for i, a in enumerate(args):
        if a.startswith("--backend="):
            return a.split("=", 1)[1] == "tensorflow"
        if a == "--backend" and i + 1 < len(args):
            return args[i + 1] == "tensorflow"
    return True


TF_COMMANDS = {"summary", "values", "train", "evaluate", "predict", "export", "bench", "visualize"}


@click.group(cls=KerasCNNGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kerascnn")
def cli():
    """Build, inspect, train, evaluate and ship the CNNs of the lectures.

    \b
    Quick start:
      kerascnn list                      the model zoo
      kerascnn summary convnet           Keras summary + lecture arithmetic
      kerascnn summary "conv5-10s1p2" --input-shape 32,32,3
      kerascnn train convnet             train on the bundled digits data
    """


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ INFO lines off the terminal
    cli.main(args=argv, prog_name="kerascnn")


if __name__ == "__main__":
    main()
