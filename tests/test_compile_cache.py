"""JAX's persistent compilation cache is on by default: a second process running the
same sweep loads its programs from the cache; the directory is configurable and the
cache can be switched off. (Times are reported, never asserted.)"""

import json
import re

import pytest
from conftest import make_spec
from scale_helpers import child_env, jaxgd_cli, sweep, write_spec

import jaxgd
from jaxgd.engine import compile_cache


def stats(out):
    return json.loads((out / "stats.json").read_text())


def test_second_run_loads_its_programs_from_the_cache(tmp_path):
    spec_path, cache = write_spec(tmp_path / "s.toml", sweep()), tmp_path / "cache"
    env = child_env(JAXGD_COMPILE_CACHE=cache)
    first = jaxgd_cli("run", spec_path, "--out", tmp_path / "a", env=env)
    assert first.returncode == 0, first.stderr
    assert stats(tmp_path / "a")["compile_cache"] == str(cache) and any(cache.iterdir())
    second = jaxgd_cli("run", spec_path, "--out", tmp_path / "b", env=env)
    assert second.returncode == 0, second.stderr
    assert stats(tmp_path / "b")["compile_cache_hits"] == 3  # both groups' programs and the draw program
    assert "3 programs, 3 from cache" in second.stderr


def test_cache_directory_option_and_off_switch(tmp_path):
    spec_path, cache = write_spec(tmp_path / "s.toml", sweep()), tmp_path / "mine"
    env = child_env(JAXGD_COMPILE_CACHE=tmp_path / "unused")
    done = jaxgd_cli("run", spec_path, "--out", tmp_path / "a", "--compile-cache", cache, env=env)
    assert done.returncode == 0, done.stderr
    assert any(cache.iterdir()) and not (tmp_path / "unused").exists()

    off = jaxgd_cli("run", spec_path, "--out", tmp_path / "b", "--compile-cache", "off", env=env)
    assert off.returncode == 0, off.stderr
    assert stats(tmp_path / "b")["compile_cache"] is None and stats(tmp_path / "b")["compile_cache_hits"] == 0
    assert not (tmp_path / "unused").exists()


def test_a_cache_directory_that_cannot_be_written_is_refused_naming_where_it_was_set(tmp_path, monkeypatch, no_compile):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    given = rf"--compile-cache \(compile_cache_dir=\): got {re.escape(str(a_file))}; "
    with pytest.raises(ValueError, match=given + r"it cannot hold the compile cache \(it is a file\); "
                                               r"give a writable folder, or off for none"):
        jaxgd.run(make_spec(), compile_cache_dir=a_file, progress=False)
    monkeypatch.setenv("JAXGD_COMPILE_CACHE", str(a_file / "cache"))
    with pytest.raises(ValueError, match=rf"\$JAXGD_COMPILE_CACHE: got {re.escape(str(a_file / 'cache'))}; "
                                         r".* \(Not a directory\)"):
        compile_cache.configure(None)


def test_a_cache_folder_that_takes_no_file_is_refused_though_an_access_check_allows_it(no_compile):
    """/proc: an access check says root may write there (the cache was taken, and JAX then
    skipped it program by program, with a warning each); a file made there says no."""
    with pytest.raises(ValueError, match=r"--compile-cache \(compile_cache_dir=\): got /proc; "
                                         r"it cannot hold the compile cache \(.+\); give a writable folder"):
        jaxgd.run(make_spec(), compile_cache_dir="/proc", progress=False)
