"""Which pieces preparation keeps (`Filters`), and its error type. Light: no numpy or music imports."""

from __future__ import annotations

from dataclasses import dataclass

from mmt.errors import MMTError


class PrepareError(MMTError, ValueError):
    """A preparation cannot start (bad arguments, an OUT prepared with other settings, a lock held)."""


@dataclass(frozen=True)
class Filters:
    """Which pieces are kept.

    Attributes:
        min_notes: fewest notes the encoding can represent (drums count; unmodelled programs do not).
        min_beats: fewest beats, counted to the end of the last note.
        max_beats: most beats (longer pieces are usually broken files: wrong tempo map or resolution).
        max_file_mb: larger files are not read (a guard against huge files exhausting memory).
        timeout_s: a file taking longer to read and convert fails (0: no limit).
    """

    min_notes: int = 16
    min_beats: int = 4
    max_beats: int = 10_000
    max_file_mb: float = 32.0
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.min_notes < 0 or self.min_beats < 0:
            raise PrepareError("min_notes and min_beats must be >= 0")
        if self.max_beats < max(self.min_beats, 1):
            raise PrepareError(f"max_beats ({self.max_beats}) must be >= min_beats ({self.min_beats}) and >= 1")
        if self.max_file_mb <= 0 or self.timeout_s < 0:
            raise PrepareError("max_file_mb must be > 0 and timeout_s >= 0")
