"""Whether a request could ever fit this host: shared by the API (422 at submit time) and the
scheduler (a queued task whose host shrank below it fails instead of waiting forever).
"""

from dataclasses import dataclass

from models.quantities import counted, format_size, format_size_floor


@dataclass(frozen=True)
class HostLimits:
    """The most the host can hand to one task: its whole allocatable capacity."""

    cpus: int
    gpus: int
    ram: int
    storage: int
    # The runtimes whose images the host holds; None until the controller has looked.
    runtimes: frozenset[str] | None = None


def exceeded_limits(
    *, cpu: int, gpu: int, ram: int, storage: int, host: HostLimits
) -> list[tuple[str, str]]:
    """(field, message) for every resource asked beyond what the host can ever allocate."""
    problems = []
    if cpu > host.cpus:
        problems.append(
            ("cpu", f"requested {counted(cpu, 'CPU')}, this host can allocate {host.cpus}")
        )
    if gpu > host.gpus:
        problems.append(
            ("gpu", f"requested {counted(gpu, 'GPU')}, this host can allocate {host.gpus}")
        )
    if ram > host.ram:
        problems.append(
            (
                "ram",
                f"requested {format_size(ram)} RAM, "
                f"this host can allocate {format_size_floor(host.ram)}",
            )
        )
    if storage > host.storage:
        problems.append(
            (
                "storage",
                f"requested {format_size(storage)} storage, "
                f"this host can allocate {format_size_floor(host.storage)}",
            )
        )
    return problems
