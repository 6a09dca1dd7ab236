"""On a host without accelerators `jaxgd run` makes one JAX device per core, so the
engine puts a chunk on every core; a count the user chose wins, and the numbers are
those of one device, bit for bit."""

import json
import subprocess
import sys

from scale_helpers import TIMEOUT, assert_same_results, child_env, jaxgd_cli, sweep, write_spec

import jaxgd
from jaxgd.engine import host


def in_fresh_python(code: str, **env) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT,
                          env=child_env(**env))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


IMPORT = "import jax, jaxgd; "
ASK_THEN_COUNT = "print(jaxgd.use_all_cores(), jax.local_device_count())"


def test_one_cpu_device_per_available_core():
    cores = host.available_cores()
    assert in_fresh_python(IMPORT + ASK_THEN_COUNT, JAX_PLATFORMS="cpu") == f"{cores} {cores}"


def test_a_device_count_the_user_chose_wins():
    flags = "--xla_force_host_platform_device_count=3"
    assert in_fresh_python(IMPORT + ASK_THEN_COUNT, JAX_PLATFORMS="cpu", XLA_FLAGS=flags) == "0 3"
    chose = "jax.config.update('jax_num_cpu_devices', 1); "
    assert in_fresh_python(IMPORT + chose + ASK_THEN_COUNT, JAX_PLATFORMS="cpu") == "0 1"


def test_once_jax_has_started_the_count_is_left_alone():
    started = "jax.numpy.ones(1).block_until_ready(); "
    assert in_fresh_python(IMPORT + started + ASK_THEN_COUNT, JAX_PLATFORMS="cpu") == "0 1"


def test_the_cli_runs_on_every_core_with_the_one_device_numbers(tmp_path):
    spec = sweep(chunk_size=4)
    reference = jaxgd.run(spec, progress=False)
    out = tmp_path / "all-cores"
    done = jaxgd_cli("run", write_spec(tmp_path / "s.toml", spec), "--out", out, env=child_env(JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "stats.json").read_text())["devices"] == host.available_cores()
    assert_same_results(out, reference)


RUN_TWICE = ("import jaxgd, tomllib; spec = tomllib.load(open({spec!r}, 'rb'))\n"
             "for _ in range(2):\n    print(jaxgd.run(spec, progress=False).stats['devices'])")


def test_the_python_api_trains_on_every_core_or_says_once_how_to(tmp_path):
    spec = write_spec(tmp_path / "s.toml", sweep())
    run_twice = RUN_TWICE.format(spec=str(spec))
    done = subprocess.run([sys.executable, "-c", run_twice], capture_output=True, text=True, timeout=TIMEOUT,
                          env=child_env(JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr
    cores = host.available_cores()
    assert done.stdout.split() == [str(cores)] * 2 and "JAX started before jaxgd" not in done.stderr
    if cores == 1:
        return  # nothing to warn about
    started = "import jax; jax.numpy.ones(1).block_until_ready()\n"
    done = subprocess.run([sys.executable, "-c", started + run_twice], capture_output=True, text=True,
                          timeout=TIMEOUT, env=child_env(JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"] and done.stderr.count("JAX started before jaxgd") == 1
    assert f"jax.config.update('jax_num_cpu_devices', {cores})" in done.stderr
