"""The base class of mmt's own errors.

Every error that mmt raises on purpose (a bad file, config, checkpoint, argument or
prompt) derives from `MMTError`, so a command line can report those in one line and let
anything else (a bug in mmt, numpy or torch) show its traceback. Most also derive from
`ValueError`, which is what they were before the base class existed.
"""

from __future__ import annotations


class MMTError(Exception):
    """A failure of the user's input or environment, with a message that says what to fix.

    `argument`: the name of the argument the message is about, when it names one; it stands at
    offset `at` of the message (0: "bars must be a positive number, got 0"). A caller that
    knows the argument by another name, such as a command-line option, says it in its own
    words with `naming`.
    """

    def __init__(self, *args, argument: str | None = None, at: int = 0) -> None:
        super().__init__(*args)
        if argument is not None and str(self)[at:at + len(argument)] != argument:
            raise ValueError(f"the message of an error about {argument!r} must name it at offset {at}: {self}")
        self.argument, self.at = argument, at

    def naming(self, name: str) -> str:
        """The message with its argument called `name` (the message itself when it names no argument)."""
        message = str(self)
        if self.argument is None:
            return message
        return message[:self.at] + name + message[self.at + len(self.argument):]


class GenerationError(MMTError, ValueError):
    """A generation request cannot run (bad mode, prompt, instruments, length or sampling)."""


class GenerationWarning(UserWarning):
    """A generation request runs, but not quite as asked (e.g. a prompt shorter than its cut)."""
