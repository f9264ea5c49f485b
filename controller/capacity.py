"""What this host can hand out: logical CPUs, RAM and free disk from psutil, GPUs from NVML,
minus the configured reserves. The controller calls `discover_capacity` at start and then
now and again, and writes the result into the `capacity` table.
"""

from dataclasses import dataclass
from pathlib import Path

import psutil

from controller.gpus import GpuInfo
from controller.scheduling import Allocatable
from models.settings import Settings


@dataclass(frozen=True)
class HostCapacity:
    cpus_total: int
    cpu_ids: tuple[int, ...]
    ram_total: int
    ram_allocatable: int
    storage_total: int
    storage_allocatable: int
    gpus: tuple[GpuInfo, ...]
    gpu_sharing: int

    def allocatable(self) -> Allocatable:
        return Allocatable(
            cpu_ids=self.cpu_ids,
            gpu_ids=tuple(gpu.index for gpu in self.gpus),
            ram=self.ram_allocatable,
            storage=self.storage_allocatable,
            gpu_sharing=self.gpu_sharing,
        )


def _usable_cpus() -> list[int]:
    try:
        import os

        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(psutil.cpu_count(logical=True) or 1))


def discover_capacity(
    settings: Settings, *, data_root: str | None, gpus: list[GpuInfo]
) -> HostCapacity:
    cpus = _usable_cpus()
    # The reserve keeps the lowest-numbered cores for the service and the engine.
    cpu_ids = tuple(cpus[settings.reserved_cpus :])
    ram_total = psutil.virtual_memory().total
    disk_path = data_root if data_root and Path(data_root).exists() else str(settings.data_dir)
    Path(disk_path).mkdir(parents=True, exist_ok=True)
    disk = psutil.disk_usage(disk_path)
    return HostCapacity(
        cpus_total=len(cpus),
        cpu_ids=cpu_ids,
        ram_total=ram_total,
        ram_allocatable=max(0, ram_total - settings.reserved_ram_bytes),
        storage_total=disk.total,
        storage_allocatable=max(0, disk.free - settings.reserved_storage_bytes),
        gpus=tuple(gpus),
        gpu_sharing=settings.gpu_sharing,
    )
