"""Regenerate tests/golden/*.txt: ``python -m tests.regen_golden`` (from the repository root)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.golden_cases import CASES, GOLDEN_DIR, render  # noqa: E402


def main():
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, args in CASES.items():
        path = GOLDEN_DIR / name
        text = render(args)
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{'updated' if changed else 'same   '} {path.relative_to(GOLDEN_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
