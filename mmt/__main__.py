"""`python -m mmt` runs the command line (also what torchrun starts).

An entry point, not part of the library: importing `mmt` never runs this file, so the
library still does not depend on the app layer (`mmt_app`) that the command line lives in.
"""

from mmt_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
