"""`settle_heap`, which `taskyard serve`, `api` and `controller` call once start-up is done."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from taskyard.service import settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    """Give the process's collector back as it was."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_start_up_objects_are_frozen_out_of_the_collectors_sight() -> None:
    gc.unfreeze()
    kept = [object() for _ in range(10)] + [[]]  # a tracked object that start-up keeps
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept[-1] for obj in gc.get_objects())  # frozen objects are not listed


@pytest.mark.usefixtures("collector")
def test_young_objects_are_collected_less_often() -> None:
    settle_heap()
    assert gc.get_threshold()[0] == 50_000


@pytest.mark.usefixtures("collector")
def test_garbage_is_collected_before_the_freeze() -> None:
    gc.unfreeze()

    class Node:
        other: "Node"

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle that only the collector can free
    witness = weakref.ref(a)
    del a, b
    settle_heap()
    assert witness() is None  # freed, not frozen with the rest
