class SpecError(ValueError):
    """A spec that cannot be run; the message names the key, the value and what is allowed."""
