"""Metrics, evaluation, attention and embedding analysis, and the HTML report."""

from mmt.errors import MMTError


class AnalysisError(MMTError, ValueError):
    """An evaluation or analysis cannot run (bad settings, an empty split, a folder of other settings)."""
