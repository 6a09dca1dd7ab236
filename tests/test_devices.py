"""All local devices: the run axis is sharded over every device JAX sees, with no change
to the spec, and the numbers are those of a one-device run, bit for bit (each run is
computed in the same chunk, at the same place, whatever the device count)."""

import json

import numpy as np
import pytest
from scale_helpers import assert_same_results, child_env, jaxgd_cli, sweep, write_spec

import jaxgd
from jaxgd.engine import dispatch as engine
from jaxgd.storage import shares
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs


@pytest.mark.parametrize("engine_settings", [{"chunk_size": 5}, {}, {"chunk_size": 5, "strategy": "map"}],
                         ids=["chunks of 5", "default chunks", "chunks of 5, mapped"])
def test_four_forced_cpu_devices_give_the_one_device_history(tmp_path, engine_settings):
    spec = sweep(**engine_settings)
    reference = jaxgd.run(spec, progress=False)
    assert reference.stats["devices"] == 1
    out = tmp_path / "four"
    done = jaxgd_cli("run", write_spec(tmp_path / "s.toml", spec), "--out", out,
                     env=child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["devices"] == 4
    if engine_settings:  # 2 groups of 12 runs in chunks of 4: one call of 4 chunks each, one per device
        assert stats["chunks"] == 2 and "on 4 devices" in done.stderr
    assert_same_results(out, reference)


def test_next_call_pads_short_and_missing_chunks():
    positions = np.array([3, 4, 5, 6, 7, 9, 11])
    padded, real = engine.next_call(positions, size=3, n_devices=4)
    assert padded.tolist() == [3, 4, 5, 6, 7, 9, 11, 11, 11, 3, 4, 5]
    assert real.tolist() == [True] * 7 + [False] * 5


def test_chunking_does_not_depend_on_the_device_count():
    plan = planning.make(specs.load(sweep()))
    assert [g.chunk_size for g in plan.groups] == [12, 12]  # small groups: one chunk each
    # A budget of 2 GiB, as on an accelerator (the host's default is cache-sized, 8 MiB)
    big = planning.make(specs.load(sweep(memory_budget_mb=2048) | {"seeds": 1500}))
    # 6000 runs a group: 16 chunks would hold fewer than 1024 runs; 6 chunks of 1000 do,
    # padded to 1024, the next size of the fixed set
    assert [g.chunk_size for g in big.groups] == [1024, 1024]
    assert len(shares.chunks(big)) == 12
    huge = planning.make(specs.load(sweep(memory_budget_mb=2048) | {"seeds": 10_000}))
    # 40000 runs a group: at most 2500 a chunk (a sixteenth), 2048 in the fixed set: 20
    # chunks, so up to 20 devices share each group
    assert [g.chunk_size for g in huge.groups] == [2048, 2048]


def test_host_chunks_are_cache_sized_and_fixed():
    """On the host the default budget is CPU_BUDGET_CAP (8 MiB), a constant: the same
    spec is cut into the same chunks on any host."""
    assert planning.default_memory_budget() == min(planning.CPU_BUDGET_CAP, planning.default_memory_budget())
    spec = sweep() | {"seeds": 100, "data": {"name": "two_layer_teacher", "n": 256, "d": 32}, "model": {"width": 128}}
    plan = planning.make(specs.load(spec))
    per_run = planning.bytes_per_run(plan.groups[0].static)
    assert per_run * plan.groups[0].chunk_size <= planning.CPU_BUDGET_CAP < per_run * (plan.groups[0].chunk_size + 1)


def test_a_program_calling_lapack_runs_on_one_of_several_host_devices(tmp_path):
    """ntk_min_eig calls LAPACK (eigvalsh): on two CPU devices at once such a program
    never finished (two_rates.toml hung); its group runs on the first device alone,
    with the one-device numbers."""
    spec = sweep() | {"metrics": ["train_loss", "ntk_min_eig"]}
    reference = jaxgd.run(spec, progress=False)
    out = tmp_path / "two"
    done = jaxgd_cli("run", write_spec(tmp_path / "s.toml", spec), "--out", out,
                     env=child_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "stats.json").read_text())["devices"] == 2
    assert_same_results(out, reference)
