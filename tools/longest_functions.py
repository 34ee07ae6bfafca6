"""The longest functions of some modules, with a simple branch count (pure Python, ast only).

    python tools/longest_functions.py                  # the training path (issue 20)
    python tools/longest_functions.py kerascnn/data -n 5

Lines are the ``def``'s first to last line (docstring and decorators' body included, the
decorator lines not); branches count ``if``/``for``/``while``/``try`` handlers/``with``/boolean
operators/comprehension ``if``s + 1 (a cyclomatic-complexity estimate, as radon counts it
roughly). Nested functions are listed on their own and also count in their parent's lines.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

TRAIN_PATH = ("kerascnn/training", "kerascnn/engines", "kerascnn/commands/train.py", "kerascnn/api.py",
              "kerascnn/data/source.py")


def branches(node) -> int:
    n = 1
    for sub in ast.walk(node):
        if isinstance(sub, (ast.If, ast.For, ast.While, ast.IfExp, ast.ExceptHandler, ast.With, ast.Assert)):
            n += 1
        elif isinstance(sub, ast.BoolOp):
            n += len(sub.values) - 1
        elif isinstance(sub, ast.comprehension):
            n += 1 + len(sub.ifs)
    return n


def functions(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    stack = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, child.end_lineno - child.lineno + 1, branches(child), child.lineno
                stack.append((child, name + "."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, f"{prefix}{child.name}."))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=list(TRAIN_PATH))
    ap.add_argument("-n", type=int, default=15, help="how many to list")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    files = []
    for p in args.paths:
        p = root / p
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    rows = [(lines, cc, f"{f.relative_to(root)}:{line} {name}") for f in files for name, lines, cc, line in functions(f)]
    rows.sort(reverse=True)
    print(f"{'lines':>5} {'branches':>8}  function")
    for lines, cc, where in rows[:args.n]:
        print(f"{lines:>5} {cc:>8}  {where}")


if __name__ == "__main__":
    main()
