"""The package's settings are in setup.cfg; this file only adds the optional C extension.

`mmt._native` (mmt/_native.c, CPython's C API alone) reads MIDI notes in one pass and cleans them; when
it cannot be built (no compiler), `mmt.midi` reads every file with symusic instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mmt._native", ["mmt/_native.c"], optional=True)])
