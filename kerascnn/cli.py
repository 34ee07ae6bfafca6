"""The ``kerascnn`` command line: a thin click layer.

Each command lives in ``kerascnn/commands/NAME.py`` and imports TensorFlow only
inside its function body, after click has parsed its arguments and the command
has checked everything that needs no model (``commands.common.load_tensorflow``),
so ``--help`` and every argument error are instant. Domain errors are turned into
click errors here, once: ``ConfigError`` -> exit 2 with one ``Error:`` line,
other ``KerasCNNError`` -> exit 1.
Anything unexpected becomes a one-line error too (set ``KERASCNN_DEBUG=1`` for
the traceback).
"""
from __future__ import annotations

import importlib
import os

import click

from kerascnn._version import __version__
from kerascnn.errors import ConfigError, KerasCNNError, Stopped

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
    "shards": "kerascnn.commands.shards:shards",
}


def one_line(exc: BaseException) -> str:
    """First meaningful line of an exception's text, without ANSI escapes."""
    from kerascnn.errors import first_line, tf_graph_error

    msg = first_line(exc)   # a TensorFlow graph error: its cause (cut to 80 characters, they were all one saw)
    if "Iterator::" in str(exc) and tf_graph_error(first_line(exc, default="", tf=False)):
        msg = "while reading the data: " + msg
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
            return super().invoke(ctx)
        except click.ClickException as e:  # click echoes the bad value: bound it (a 5,000-digit number)
            if len(e.message) > 400:
                e.message = e.message[:200] + f" ...[{len(e.message) - 300:,} characters]... " + e.message[-100:]
            raise
        except (click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Stopped as e:
            from kerascnn import stopping

            stopping.report(one_line(e))
            ctx.exit(128 + SIGNAL_NUMBERS.get(e.signal_name, 15))
        except ConfigError as e:
            raise DomainError(one_line(e)) from None
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
            ours = _own_error(one_line(e))
            if ours is not None:      # kerascnn's own error raised inside tf.data (a numpy_function)
                raise ours from None
            raise click.ClickException(
                f"{e.__class__.__name__}: {one_line(e)} (set KERASCNN_DEBUG=1 for the traceback)"
            ) from None


def _own_error(line: str):
    """``kerascnn.errors.DataError: msg`` (how TensorFlow passes on an exception raised in a
    ``tf.numpy_function``; eagerly ``{{function_node ...}} DataError: msg``) -> the click exception
    that error gets directly; else None."""
    import re

    from kerascnn import errors

    m = re.match(r"(?:while reading the data: )?(?:\{\{function_node [^}]*\}\}\s*)?(?:kerascnn\.errors\.)?(\w+): (.+)", line)
    cls = getattr(errors, m.group(1), None) if m else None
    if not (isinstance(cls, type) and issubclass(cls, KerasCNNError)):
        return None
    return DomainError(m.group(2)) if issubclass(cls, ConfigError) else click.ClickException(m.group(2))


class DomainError(click.ClickException):
    """A ConfigError from inside a command: exit 2 like a usage error, but one `Error:` line and no
    usage header (click's own parse errors still print the subcommand's usage)."""

    exit_code = 2


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


SIGNAL_NUMBERS = {"SIGTERM": 15, "SIGHUP": 1}


def install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) raise ``Stopped`` in the main thread, so a stopped command unwinds like
    Ctrl-C (cleanup runs) and ends with "Error: stopped (SIGTERM)" and exit 143, not silently;
    also when the signal lands in a garbage-collection callback or the main thread is stuck in C
    (``kerascnn.stopping``)."""
    from kerascnn import stopping

    stopping.install()


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ INFO lines off the terminal
    install_signal_handlers()
    cli.main(args=argv, prog_name="kerascnn")


if __name__ == "__main__":
    main()
