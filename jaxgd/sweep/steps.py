"""Steps as a spec lists them (`save_params = [0, 500, "final"]`) or a reader asks for
them (`Results.params(run_id, "final")`): a step number, or "final" for the last step.
Imports no JAX: reading a finished sweep's tables and parameters never needs it."""

from __future__ import annotations

FINAL = "final"  # in a list of steps, or asked for: the last step
LISTED = 4  # a longer list of steps is shown in an error by its first and last ones


def step_number(step, *, last: int):
    """The step number `step` stands for: `last` for "final", else `step` itself."""
    return last if step == FINAL else step


def step_numbers(steps, *, last: int) -> tuple[int, ...]:
    """A spec's list of steps as step numbers, sorted, each once."""
    return tuple(sorted({step_number(step, last=last) for step in steps}))


def chosen_step(step, *, last: int, allowed, which: str) -> int:
    """The step number of `step`, one of the steps `allowed` or "final" (where the last
    step is one of them); otherwise a ValueError naming them, `which` steps they are."""
    allowed = [int(t) for t in allowed]
    at = step_number(step, last=last)
    if isinstance(at, bool) or at not in allowed:
        shown = allowed if len(allowed) <= LISTED else [*allowed[:LISTED - 1], "...", allowed[-1]]
        final = f' or "{FINAL}" (step {last})' if last in allowed else f' ("{FINAL}" is step {last})'
        raise ValueError(f"step: got {step!r}; expected one of the steps {which}, [{', '.join(map(str, shown))}]{final}")
    return int(at)
