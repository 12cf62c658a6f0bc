"""`mmt._native`, the C extension (mmt/_native.c, built by setup.py), or None where it is not built.

It holds C versions of MIDI reading (`scan`, used by `mmt.midi.read_midi_notes`),
`mmt.encoding.notes_from_ticks` and `data_prep.pipeline.clean_notes`. Each gives exactly
what the Python code gives (tests/test_native.py compares them) or None where it cannot
vouch for that; without the extension the Python code does all the work, more slowly.
"""

try:
    from mmt import _native as native
except ImportError:  # no compiler when the package was installed
    native = None
