"""GPU discovery through NVML (nvidia-ml-py), degrading to "no GPUs" without an error.

Hosts without the NVIDIA driver lack libnvidia-ml; `discover_gpus` then returns an empty list
and says why in its second value. Tests pass a fake `nvml` module with the same functions.
"""

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_bytes: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover_gpus(nvml: ModuleType | Any | None = None) -> tuple[list[GpuInfo], str]:
    """The GPUs NVML sees, and a sentence on how discovery went."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return [], "nvidia-ml-py is not installed"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, OSError, …
        return [], f"NVML unavailable ({exc}): running without GPUs"
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    memory_bytes=int(memory.total),
                )
            )
        return gpus, f"NVML sees {len(gpus)} GPU(s)"
    except Exception as exc:
        return [], f"NVML failed while listing GPUs ({exc}): running without GPUs"
    finally:
        # Shutting down a half-initialised NVML is best effort.
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
