"""Seeds matplotlib's font cache in a task's work area from the one built into the image.

`sandbox.imagebuild` copies this file into images whose runtime has matplotlib, as
`taskyard_fontcache.py` beside matplotlib, with a `.pth` line that calls `seed()` whenever
Python starts there; the cache itself is built at `BUILT` during the image build. Without it,
each task's first `import matplotlib` scans every font again: its cache directory,
MPLCONFIGDIR (/work/.matplotlib), starts empty in each task, and matplotlib ignores a cache
directory it cannot write to. Standard library only: it runs inside task containers.
"""

import os

BUILT = "/usr/share/taskyard/matplotlib"


def seed() -> None:
    target = os.environ.get("MPLCONFIGDIR")
    if not target or os.getuid() == 0:  # root is the supervisor; the task runs as 65534
        return
    try:
        for name in os.listdir(BUILT):
            copy = os.path.join(target, name)
            if not os.path.exists(copy):
                os.makedirs(target, exist_ok=True)
                with open(os.path.join(BUILT, name), "rb") as built, open(copy, "xb") as out:
                    out.write(built.read())
    except OSError:
        pass  # matplotlib then builds its own cache, as it would without this
