"""Which runtimes the engine's images hold: read from the labels `sandbox.imagebuild` puts on
each runtime image, for the Capacity row (GET /runtimes, admission) and for scheduling.

Called by `DockerRuntime.health` with the engine's labelled images. Pure: an image counts for a
runtime only under the name this instance would run it by (`Runtime.image`), so another
instance's images, built under other names, are not taken for ours.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any

from models.runtimes import BY_NAME, DEFAULT_RUNTIME, PACKAGES_LABEL, RUNTIME_LABEL, VERSION_LABEL

# A label longer than this was not written by our image build.
MAX_LABEL_CHARS = 4096


def installed_runtimes(
    images: Iterable[tuple[Iterable[str], Mapping[str, str]]], default_image: str
) -> dict[str, dict[str, Any]]:
    """runtime name -> {image, version, packages}, from (tags, labels) of each image."""
    found: dict[str, dict[str, Any]] = {}
    for tags, labels in images:
        runtime = BY_NAME.get(labels.get(RUNTIME_LABEL, ""))
        if runtime is None or runtime.image(default_image) not in set(tags):
            continue
        found[runtime.name] = {
            "image": runtime.image(default_image),
            "version": _text(labels.get(VERSION_LABEL)),
            "packages": _packages(labels.get(PACKAGES_LABEL)),
        }
    return found


def with_default(found: dict[str, dict[str, Any]], default_image: str) -> dict[str, dict[str, Any]]:
    """`found`, and the default runtime where its image is present without our labels (one
    built before they were written, or by hand): it runs, its version unknown."""
    if DEFAULT_RUNTIME in found:
        return found
    return {DEFAULT_RUNTIME: {"image": default_image, "version": None, "packages": {}}, **found}


def _text(value: str | None) -> str | None:
    if value is None or len(value) > MAX_LABEL_CHARS:
        return None
    return value.strip() or None


def _packages(value: str | None) -> dict[str, str]:
    if value is None or len(value) > MAX_LABEL_CHARS:
        return {}
    try:
        packages = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(packages, dict):
        return {}
    return {
        str(name): str(version) for name, version in packages.items() if isinstance(version, str)
    }
