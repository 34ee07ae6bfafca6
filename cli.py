"""Thin entry point: ``python cli.py ...`` behaves exactly like ``kerascnn ...``."""
from kerascnn.cli import main

if __name__ == "__main__":
    main()
