import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Invoke the kerascnn CLI in-process; returns click's Result."""
    from kerascnn.cli import cli

    def _invoke(*args, **kw):
        return runner.invoke(cli, [str(a) for a in args], **kw)

    return _invoke
