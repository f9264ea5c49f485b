"""What the reconciler asks the warm pool for: templates that differ from a task's container
only in what a claim fits (cores, CPU quota, memory), sized to free RAM and the queue."""

from dataclasses import replace

from fake_world import World

from controller.runtime import WarmKey

MB = 1 << 20


def test_templates_match_the_tasks_they_serve(world: World) -> None:
    task_id = world.submit()
    world.once()
    started = world.fake.containers[next(iter(world.fake.names()))].spec
    assert started.labels["taskyard.task"] == task_id
    assert world.fake.warm_wanted, "the pool was asked for nothing"
    template, count = world.fake.warm_wanted[0]
    assert count == world.settings.warm_pool_size
    # Everything fixed at creation is the task's own: hardening cannot differ.
    assert WarmKey.of(template) == WarmKey.of(started)
    fitted = {
        "name": "",
        "labels": {},
        "cpus": (),
        "cpu_quota": template.cpu_quota,
        "ram": template.ram,
        "payload": b"",
        "interactive": False,
    }
    assert replace(started, **fitted) == template
    assert template.ram == world.settings.warm_pool_idle_ram_bytes
    assert template.name == "" and template.payload == b""


def test_waiting_tasks_sizes_are_warmed_first(world: World) -> None:
    for _ in range(4):  # two cores: two start, two wait
        world.submit()
    world.once()
    storages = {t.storage: n for t, n in world.fake.warm_wanted}
    assert storages == {100 * MB: world.settings.warm_pool_size}


def test_closing_the_reconciler_closes_the_runtime(world: World) -> None:
    world.reconciler.close()
    assert world.fake.closed
