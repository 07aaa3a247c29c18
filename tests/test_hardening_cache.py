"""Trusting the grammar cache: it is a pickle, so it is loaded only from a private
directory (a real directory owned by this user, mode 0700) and only when the file is a
regular file of this user that no one else can write.  A planted pickle anywhere else
is never unpickled (it would run code)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import evo
    evo.compile("network N(x: Tensor[N, 3, 4, 4]) {\\n    return relu(x)\\n}\\n")
    from evo.frontend.parser import _cache_file
    print(_cache_file())
""")

PAYLOAD = textwrap.dedent("""
    import os, pickle, sys
    class Boom:
        def __reduce__(self):
            return (os.mkdir, (sys.argv[2],))
    header = open(sys.argv[1], "rb").readline()
    with open(sys.argv[1], "wb") as f:
        f.write(header)
        pickle.dump(Boom(), f)
""")


def _compile_with_cache(cache_home: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    env.pop("EVO_NO_GRAMMAR_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", RUN, str(ROOT)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def _plant(cache_file: Path, marker: Path) -> None:
    """Replace a valid cache (its grammar hash kept) with a pickle that runs code."""
    subprocess.run([sys.executable, "-c", PAYLOAD, str(cache_file), str(marker)], check=True, timeout=60)


@pytest.fixture(scope="module")
def valid_cache(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cache")
    path = Path(_compile_with_cache(home))
    assert path.parent == home / "evo" and path.is_file()
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    return path


def _setup(tmp_path: Path, valid_cache: Path, marker: Path) -> Path:
    home = tmp_path / "home"
    (home / "evo").mkdir(parents=True)
    os.chmod(home / "evo", 0o700)
    f = home / "evo" / valid_cache.name
    f.write_bytes(valid_cache.read_bytes())
    os.chmod(f, 0o600)
    _plant(f, marker)
    return home


def test_a_private_cache_is_used(tmp_path, valid_cache):
    """The control: the same planted pickle in a private directory is loaded (so the
    refusals below are what keeps it from running)."""
    marker = tmp_path / "ran"
    home = _setup(tmp_path, valid_cache, marker)
    _compile_with_cache(home)
    assert marker.exists()


@pytest.mark.parametrize("how", ["file_group_writable", "file_is_symlink", "dir_is_symlink", "dir_other_owner",
                                 "file_other_owner"])
def test_a_cache_that_others_could_write_is_never_loaded(tmp_path, valid_cache, how):
    marker = tmp_path / "ran"
    home = _setup(tmp_path, valid_cache, marker)
    f = home / "evo" / valid_cache.name
    if how == "file_group_writable":
        os.chmod(f, 0o666)
    elif how == "file_is_symlink":
        elsewhere = tmp_path / "elsewhere.cache"
        f.rename(elsewhere)
        f.symlink_to(elsewhere)
    elif how == "dir_is_symlink":
        (home / "evo").rename(tmp_path / "real")
        (home / "evo").symlink_to(tmp_path / "real")
    else:
        if os.getuid() != 0:
            pytest.skip("needs root to give a file to another user")
        os.chown(home / "evo" if how == "dir_other_owner" else f, 65534, 65534)
    got = _compile_with_cache(home)
    assert not marker.exists(), "a planted pickle was loaded"
    assert got == "False"


def test_a_shared_directory_is_made_private(tmp_path, valid_cache):
    """This user's own cache directory left open (0777) is closed (0700), not trusted as is."""
    home = tmp_path / "home"
    (home / "evo").mkdir(parents=True)
    os.chmod(home / "evo", 0o777)
    _compile_with_cache(home)
    assert (home / "evo").stat().st_mode & 0o777 == 0o700
