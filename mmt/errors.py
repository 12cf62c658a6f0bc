"""The base class of mmt's own errors.

Every error that mmt raises on purpose (a bad file, config, checkpoint, argument or
prompt) derives from `MMTError`, so a command line can report those in one line and let
anything else (a bug in mmt, numpy or torch) show its traceback. Most also derive from
`ValueError`, which is what they were before the base class existed.
"""

from __future__ import annotations


class MMTError(Exception):
    """A failure of the user's input or environment, with a message that says what to fix."""


class GenerationError(MMTError, ValueError):
    """A generation request cannot run (bad mode, prompt, instruments, length or sampling)."""


class GenerationWarning(UserWarning):
    """A generation request runs, but not quite as asked (e.g. a prompt shorter than its cut)."""
