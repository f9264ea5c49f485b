"""The runtimes a task may ask for: a named image and a way to compile and run its main file.

Shared vocabulary: the API checks a task's `runtime` against `RUNTIMES` (and against what the
controller last saw installed), the controller turns the chosen one into the container's image
and the supervisor's job, and `sandbox.imagebuild` builds each image from its Debian packages.
Every image also holds `python3`: the supervisor that runs first in each container is Python.
"""

from dataclasses import dataclass

# Labels `sandbox.imagebuild` puts on every runtime image, read back by the controller.
RUNTIME_LABEL = "org.taskyard.runtime"
VERSION_LABEL = "org.taskyard.runtime.version"
PACKAGES_LABEL = "org.taskyard.runtime.packages"

DEFAULT_RUNTIME = "python"
DATA_MODULES = ("numpy", "pandas", "scipy", "matplotlib", "sklearn", "sympy")


@dataclass(frozen=True)
class Runtime:
    """One runtime: how its image is built and how a task's main file is run in it."""

    name: str
    language: str
    aliases: tuple[str, ...]
    main_file: str
    run: tuple[str, ...]  # argv; the task's `args` follow it
    version: tuple[str, ...]  # argv that prints the version (first line kept)
    compile: tuple[str, ...] = ()  # argv run before `run`; a failure ends in CompileError
    apt_packages: tuple[str, ...] = ()  # Debian packages beside python3 (offline build)
    pip_packages: tuple[str, ...] = ()  # what a python:3.12-slim build adds with pip
    env: tuple[tuple[str, str], ...] = ()  # set for the task, not overridable by it
    # Python modules whose versions `GET /runtimes` lists (read from the image at build).
    modules: tuple[str, ...] = ()
    # The work area must allow exec(): the compile step writes a program there.
    exec_work: bool = False

    def image(self, default_image: str) -> str:
        """This runtime's image name: `default_image` itself for python, else a sibling
        (`taskyard-runner:1` → `taskyard-runner-node:1`), so that one setting names them all."""
        if self.name == DEFAULT_RUNTIME:
            return default_image
        repo, colon, tag = default_image.rpartition(":")
        if not colon or "/" in tag:  # no tag, or a registry port ("host:5000/name")
            return f"{default_image}-{self.name}"
        return f"{repo}-{self.name}:{tag}"


_C_FLAGS = ("-O2", "-pipe", "-o", "/work/main")

RUNTIMES: tuple[Runtime, ...] = (
    Runtime(
        name="python",
        language="Python",
        aliases=("py", "python3"),
        main_file="main.py",
        run=("python3", "main.py"),
        version=("python3", "--version"),
    ),
    Runtime(
        name="python-data",
        language="Python",
        aliases=("py-data", "python3-data", "scipy"),
        main_file="main.py",
        run=("python3", "main.py"),
        version=("python3", "--version"),
        apt_packages=(
            "python3-numpy",
            "python3-pandas",
            "python3-scipy",
            "python3-matplotlib",
            "python3-sklearn",
            "python3-sympy",
        ),
        pip_packages=("numpy", "pandas", "scipy", "matplotlib", "scikit-learn", "sympy"),
        env=(("MPLBACKEND", "Agg"), ("MPLCONFIGDIR", "/work/.matplotlib")),
        modules=DATA_MODULES,
    ),
    Runtime(
        name="node",
        language="JavaScript",
        aliases=("js", "javascript", "nodejs"),
        main_file="main.js",
        run=("node", "main.js"),
        version=("node", "--version"),
        apt_packages=("nodejs",),
    ),
    Runtime(
        name="c",
        language="C",
        aliases=("gcc",),
        main_file="main.c",
        compile=("gcc", "-std=c17", *_C_FLAGS, "main.c", "-lm"),
        run=("/work/main",),
        version=("gcc", "-dumpfullversion"),
        apt_packages=("gcc", "libc6-dev"),
        exec_work=True,
    ),
    Runtime(
        name="cpp",
        language="C++",
        aliases=("c++", "g++"),
        main_file="main.cpp",
        compile=("g++", "-std=c++17", *_C_FLAGS, "main.cpp"),
        run=("/work/main",),
        version=("g++", "-dumpfullversion"),
        apt_packages=("g++",),
        exec_work=True,
    ),
    Runtime(
        name="bash",
        language="Bash",
        aliases=("sh", "shell"),
        main_file="main.sh",
        run=("bash", "main.sh"),
        version=("bash", "-c", 'echo "$BASH_VERSION"'),
    ),
    Runtime(
        name="java",
        language="Java",
        aliases=("jdk",),
        main_file="Main.java",
        # One compiler thread and no shared-archive or perf-data files: a small, read-only
        # container with a pids limit.
        compile=(
            "javac",
            "-J-XX:+UseSerialGC",
            "-J-XX:TieredStopAtLevel=1",
            "-J-XX:-UsePerfData",
            "Main.java",
        ),
        run=("java", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-cp", "/work", "Main"),
        version=("java", "-version"),
        apt_packages=("default-jdk-headless",),
    ),
)

BY_NAME: dict[str, Runtime] = {runtime.name: runtime for runtime in RUNTIMES}
_BY_ALIAS: dict[str, Runtime] = {
    alias: runtime for runtime in RUNTIMES for alias in (runtime.name, *runtime.aliases)
}


def find_runtime(name: str) -> Runtime | None:
    """The runtime a name or alias stands for (case-insensitive), or None."""
    return _BY_ALIAS.get(name.strip().lower())
