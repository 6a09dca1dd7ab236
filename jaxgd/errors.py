class SpecError(ValueError):
    """A spec that cannot be run; the message names the key, the value and what is allowed."""


class SizeError(MemoryError):
    """A run too large for a device's memory; the message names the settings that size it."""


class IncompleteError(ValueError):
    """The folder does not hold every run of its sweep (yet)."""


class FigureSkipped(UserWarning):
    """A figure of the spec is left out: it has nothing to draw (say, after an override)."""
