"""The python-data image's hook that seeds matplotlib's font cache into a task's MPLCONFIGDIR."""

from pathlib import Path

import pytest

from sandbox import fontcache


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    built = tmp_path / "built"
    built.mkdir()
    (built / "fontlist-v330.json").write_text('{"fonts": 1}')
    monkeypatch.setattr(fontcache, "BUILT", str(built))
    monkeypatch.setattr(fontcache.os, "getuid", lambda: 65534)
    return built


def test_the_task_user_gets_the_built_cache(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "work" / ".matplotlib"
    monkeypatch.setenv("MPLCONFIGDIR", str(target))
    fontcache.seed()
    assert (target / "fontlist-v330.json").read_text() == '{"fonts": 1}'


def test_a_cache_already_there_is_kept(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "mpl"
    target.mkdir()
    (target / "fontlist-v330.json").write_text("the task's own")
    monkeypatch.setenv("MPLCONFIGDIR", str(target))
    fontcache.seed()
    assert (target / "fontlist-v330.json").read_text() == "the task's own"


def test_root_seeds_nothing(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The supervisor runs as root before the task: a directory it made would be root's.
    monkeypatch.setattr(fontcache.os, "getuid", lambda: 0)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    fontcache.seed()
    assert not (tmp_path / "mpl").exists()


def test_an_unwritable_place_is_no_error(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", "/proc/no-such-place/mpl")
    fontcache.seed()  # matplotlib then builds its own cache
