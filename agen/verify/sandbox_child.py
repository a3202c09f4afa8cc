"""Runs inside the sandbox's child process (never imported by agen): limits, then the code, then tests.

Started as `python -I -S -B sandbox_child.py` with an empty environment in a fresh temporary
directory and its own session. It reads one job (marshal, from agen) from stdin, lowers its own resource limits,
drops to an unprivileged user when started as root, silences the code's stdout/stderr, installs an
audit hook that refuses sockets, new processes, ctypes and file access outside its directory (and
the standard library, for imports), then runs the solution and each `assert` line, and writes one
report line, prefixed by the job's nonce, to a copy of its original stdout: passed, total, error
and first failed test, separated by \x1f (plain text, so agen parses it without a decoder).
Standard library only, and few imports (each costs every run its start-up): works with `-I -S`.
"""

import marshal
import os
import resource
import sys

# Imported before the drop to an unprivileged user, who may not be able to read the standard
# library's files (e.g. under /root): the modules solutions commonly use are then already loaded.
# Kept short: every module here costs each run its import time.
PRELOAD = ("bisect", "collections", "functools", "heapq", "itertools", "math", "operator", "re", "string", "typing")


def _limits(job):
    cpu = max(1, int(job["cpu_s"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = job["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (job["file_mb"] * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    uid = job.get("uid")
    if uid is not None and os.getuid() == 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # that user may start no process at all
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _hook(cwd, read_roots):
    deny_prefixes = ("socket.", "subprocess.", "ctypes.", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                     "os.exec", "os.system", "os.kill", "os.killpg", "pty.", "signal.pthread_kill", "urllib.",
                     "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.", "webbrowser.")
    deny_imports = {"_posixsubprocess", "_ctypes", "ctypes", "mmap", "_socket", "socket", "ssl", "_ssl",
                    "multiprocessing", "_multiprocessing", "subprocess", "signal", "_signal", "resource"}
    path_events = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link",
                   "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "os.chdir", "os.chroot",
                   "shutil.copyfile", "shutil.move", "os.listdir", "os.scandir", "glob.glob", "os.walk"}
    reading = {"os.listdir", "os.scandir", "glob.glob", "os.walk"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath = os.path.realpath
    fsdecode = os.fsdecode

    def under(path, roots):
        try:
            p = realpath(fsdecode(path))
        except (TypeError, ValueError):
            return False
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            write = bool(mode and any(c in mode for c in "wax+")) or bool(flags and flags & write_flags)
            if not under(path, (cwd,) if write else read_roots):
                deny(("writing " if write else "reading ") + str(path))
        elif event == "import":
            if args[0] in deny_imports or args[0].split(".")[0] in deny_imports:
                deny("import " + args[0])
        elif event.startswith(deny_prefixes):
            deny(event)
        elif event in path_events:
            roots = read_roots if event in reading else (cwd,)
            for a in args[:2]:
                if isinstance(a, (str, bytes, os.PathLike)) and not under(a, roots):
                    deny(event + " " + str(a))

    return hook


def _not_init():
    """In a fresh PID namespace this process is its init, and the kernel does not deliver the CPU
    limit's signals to an init: so fork once, and let init only wait and pass the status on."""
    if os.getpid() != 1:
        return
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def main():
    _not_init()
    job = marshal.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    nonce = job["nonce"]
    report_fd = os.dup(1)
    cwd = os.path.realpath(os.getcwd())
    roots = {os.path.realpath(p) for p in sys.path if p}  # with -I -S: the stdlib and lib-dynload
    read_roots = (cwd, *sorted(roots), "/dev/null", "/dev/urandom")
    if job.get("preload"):
        for name in PRELOAD:
            __import__(name)
    _limits(job)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.addaudithook(_hook(cwd, read_roots))
    passed, error, failed = 0, "", ""
    ns = {"__name__": "__solution__"}
    try:
        exec(compile(job["code"], "<solution>", "exec"), ns)
    except BaseException as exc:  # noqa: BLE001 - anything the code does is the code's failure
        error = type(exc).__name__ + ": " + str(exc)[:200]
    else:
        for i, test in enumerate(job["tests"]):
            try:
                exec(compile(test, "<test %d>" % i, "exec"), ns)
            except AssertionError:
                failed = failed or test[:200]
            except BaseException as exc:  # noqa: BLE001
                failed = failed or test[:200]
                error = error or (type(exc).__name__ + ": " + str(exc)[:200])
            else:
                passed += 1
    fields = [str(passed), str(len(job["tests"])), error, failed]
    line = "\x1f".join(f.replace("\x1f", " ").replace("\n", " ") for f in fields)
    os.write(report_fd, (nonce + line + "\n").encode("utf-8", "replace"))
    os._exit(0)


main()
