"""`python -m mmt` runs the command line (also what torchrun starts)."""

from mmt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
