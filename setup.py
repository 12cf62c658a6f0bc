"""The package's settings are in setup.cfg; this file only adds the optional C extension.

`mmt._midiscan` (mmt/_midiscan.c, CPython's C API alone) reads MIDI notes in one pass; when
it cannot be built (no compiler), `mmt.midi` reads every file with symusic instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mmt._midiscan", ["mmt/_midiscan.c"], optional=True)])
