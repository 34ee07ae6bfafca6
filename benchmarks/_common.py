"""Shared by the benchmark scripts: print a result table and append it to RESULTS.md."""
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(lines: list, record: bool = True) -> None:
    """Print the lines; append them to benchmarks/RESULTS.md unless ``record`` is False."""
    text = "\n".join(lines) + "\n"
    print(text)
    if record:
        with open(RESULTS, "a") as fh:
            fh.write(text)
