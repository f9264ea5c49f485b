"""The sandbox: what runs inside every task container, and the image it runs in.

Given the container that `controller.container_config` describes (no network, no capability but
CAP_SETUID and CAP_SETGID for PID 1 and the supervisor, no-new-privileges, a read-only root),
the sandbox promises:
- the task's code runs as user 65534 with no group and no capability; it never travels in argv
  or through a shell, and the container ends when the code exits (`supervisor`);
- the task can neither open the channel that carries its code, output and report, nor signal,
  trace or limit the root processes that hold it (`supervisor`);
- its output comes back byte for byte, each stream capped, as keyed lines that the task cannot
  forge, and the supervisor's report apart from them, every field checked (`frames`,
  `supervisor.read_report`);
- under runc, no system call makes a new namespace, an io_uring or a vsock (`seccomp`);
- each runtime's image runs `python3`, and a hello world through the runtime's own compile and
  run commands, as uid 65534 without network on a read-only root, checked after every build
  before it is named and labelled (`imagebuild`, `imagecheck`, `rootfs`, `runner/Dockerfile`);
  matplotlib finds its font cache built (`fontcache`).

It imports nothing of taskyard's other packages (`.importlinter`); `controller/` uses it, `api/`
never does. Tests: `tests/sandbox/`, and `tests/e2e/test_sandbox_boundary.py` on the real engine.
"""
