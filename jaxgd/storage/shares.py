"""Who runs what. A group's runs are cut into chunks of `group.chunk_size` consecutive
runs: the rows one device computes in one call. A call puts one chunk on each device
of the process; processes (`jax.distributed`) and Slurm tasks each take a contiguous,
cost-balanced slice of the list of all chunks. Every split is a pure function of the
plan, so each process computes the same split without talking to the others, and
whatever finished work a folder holds, the work still to do is cut the same way.

The chunking never depends on the number of devices, processes or tasks, so each run
is computed in the same chunk at the same place however the sweep is shared: the
numbers are identical, bit for bit, to a one-device run. (That matters: XLA may pick
different kernels for different batch sizes, and on the host even for different places
in a batch; near the edge of stability a difference in the last bit grows.)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxgd.sweep import plan as planning
from jaxgd.sweep.plan import Plan, cut


def chunks(plan: Plan) -> list[tuple[int, np.ndarray]]:
    """(group index, positions in the group) of every chunk of the plan, in order."""
    return [(g, c) for g, group in enumerate(plan.groups) for c in cut(np.arange(len(group.run_ids)), group.chunk_size)]


def balanced_split(costs, count: int) -> np.ndarray:
    """Label items 0..count-1 in order, contiguously, each label with about an equal
    share of the total cost."""
    costs = np.asarray(costs, float)
    if not len(costs):
        return np.zeros(0, int)
    middle = np.cumsum(costs) - costs / 2
    return np.minimum((middle * count / costs.sum()).astype(int), count - 1)


def share(plan: Plan, index: int, count: int) -> np.ndarray:
    """Boolean mask over run_ids: the runs of share `index` of `count` (a process or a
    task), whole chunks, balanced by estimated cost (the memory estimate of a run)."""
    if count < 1 or not 0 <= index < count:  # else no runs, or with one share every run, silently
        raise ValueError(f"share: got index {index} of {count} shares; expected a count >= 1 and 0 <= index < count")
    mask = np.zeros(plan.n_runs, bool)
    if count == 1:
        mask[:] = True
        return mask
    pieces = chunks(plan)
    costs = [len(c) * planning.bytes_per_run(plan.groups[g].static) for g, c in pieces]
    for (g, c), label in zip(pieces, balanced_split(costs, count)):
        if label == index:
            mask[plan.groups[g].run_ids[c]] = True
    return mask


def restrict(plan: Plan, mask: np.ndarray) -> Plan:
    """The plan reduced to the runs in `mask` (over run_ids), chunk sizes unchanged:
    the chunks of a share are the whole plan's. Groups without any runs are dropped."""
    groups = []
    for group in plan.groups:
        keep = mask[group.run_ids]
        if keep.any():
            groups.append(dataclasses.replace(
                group,
                run_ids=group.run_ids[keep],
                seeds=group.seeds[keep],
                hyper={k: v[keep] for k, v in group.hyper.items()},
            ))
    return dataclasses.replace(plan, groups=groups)
