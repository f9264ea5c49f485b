"""The one place container settings come from, for a task's container (`controller.act` starts
it) and for a warm container made before its task is known (`controller.plan` sizes the pool):
both are hardened alike, so that a warm container can serve any task.
"""

from controller.runtime import ContainerSpec
from models.runtimes import Runtime
from models.settings import Settings
from sandbox.frames import log_budget


def container_spec(
    settings: Settings,
    *,
    all_cpus: tuple[int, ...],
    name: str,
    labels: dict[str, str],
    cpus: tuple[int, ...],
    cpu_quota: float,
    gpus: tuple[int, ...],
    ram: int,
    storage: int,
    payload: bytes,
    interactive: bool,
    image: str | None = None,
    exec_work: bool = False,
) -> ContainerSpec:
    """A container's spec; `image` is the task's runtime's (default: the runner image)."""
    return ContainerSpec(
        name=name,
        labels=labels,
        image=image or settings.image,
        cpus=cpus,
        all_cpus=all_cpus,
        cpu_quota=cpu_quota or settings.best_effort_cpu_quota,
        gpus=gpus,
        ram=ram,
        storage=storage,
        pids_limit=settings.pids_limit,
        nofile_limit=settings.nofile_limit,
        payload=payload,
        interactive=interactive,
        # One bound for every task (the longest timeout's), so a warm container made before
        # its task was known serves any of them.
        log_limit=log_budget(
            settings.output_limit_bytes,
            settings.max_timeout_seconds,
            collect_files=settings.collect_max_files,
            collect_bytes=settings.collect_max_bytes,
        ),
        docker_runtime=settings.docker_runtime,
        exec_work=exec_work,
    )


def warm_template(
    settings: Settings, all_cpus: tuple[int, ...], storage: int, runtime: Runtime
) -> ContainerSpec:
    """A warm container's spec: a task's of that runtime, with an idle memory limit and no
    task yet."""
    return container_spec(
        settings,
        all_cpus=all_cpus,
        name="",
        labels={},
        cpus=(),
        cpu_quota=0.0,
        gpus=(),
        ram=settings.warm_pool_idle_ram_bytes,
        storage=storage,
        payload=b"",
        interactive=False,
        image=runtime.image(settings.image),
        exec_work=runtime.exec_work,
    )
