"""inloop's kernel fork server: fresh ipykernels forked from a process that imported them once.

`python forkserver.py serve SOCKET` imports what every ipykernel imports while it starts
(IPython, zmq, tornado, the debugger), listens on the Unix socket SOCKET, prints `ready`, and forks
one kernel per connection. It exits when its standard input closes (its launcher ended).

A connection asks for one kernel (inloop_kernel's `JupyterConfig::fork_server` is the other side):
one JSON line `{"argv", "cwd", "env"}` (the kernelspec's command line, whose arguments after
`-m ipykernel_launcher` the kernel gets) sent with the kernel's standard streams (three file
descriptors). The server answers `{"pid": N}` once the kernel leads a process group of its own,
as a launched kernel does, so that signals sent to the group (an interrupt, a kill) reach it; and
`{"exit": CODE}` when it ended (a negative CODE: killed by that signal).

Each kernel is a new process that has run no code before: a fork of the server, which never
runs user code.
"""

import json
import os
import select
import signal
import socket
import sys


def serve(path):
    # As ipykernel_launcher does: this script's folder is not the kernels' import path.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    import ipykernel.comm  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401

    # What a kernel imports later, while it starts or runs its first cell (debugpy alone is a
    # third of a kernel's start-up); optional ones are skipped when missing.
    import importlib

    for module in (
        "faulthandler",
        "ipykernel.debugger",
        "IPython.core.completerlib",
        "IPython.core.debugger",
        "IPython.core.logger",
        "IPython.core.oinspect",
        "IPython.extensions.storemagic",
        "IPython.utils.wildcard",
        "sqlite3",
        "pdb",
        "psutil",
        "tornado.platform.asyncio",
    ):
        try:
            importlib.import_module(module)
        except Exception:
            pass

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    # A child's end wakes the loop up, which reaps it and tells its connection how it ended.
    woken, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kernels = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([server, stdin, woken], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            os._exit(0)
        if woken in ready:
            os.read(woken, 4096)
            reap(kernels)
        if server not in ready:
            continue
        conn, _ = server.accept()
        fds = []
        try:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            while not message.endswith(b"\n"):
                more = conn.recv(1 << 16)
                if not more:
                    raise EOFError("the request ends early")
                message += more
            request = json.loads(message)
            if len(fds) != 3:
                raise ValueError(f"{len(fds)} file descriptors instead of 3")
        except Exception as error:  # a broken request: refuse it, keep serving
            for fd in fds:
                os.close(fd)
            conn.close()
            sys.stderr.write(f"inloop fork server: bad request: {error}\n")
            continue
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            os.close(woken)
            os.close(wake)
            for sock in (server, conn, *kernels.values()):
                sock.close()
            become_kernel(request, fds)
        # The child does it too: whichever comes first, the group exists before the answer.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        kernels[pid] = conn
        tell(conn, {"pid": pid})


def tell(conn, message):
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # its client is gone
        pass


def reap(kernels):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = kernels.pop(pid, None)
        if conn is not None:
            tell(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()


def become_kernel(request, fds):
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # ipykernel exits when its parent (this server) is gone.
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        argv = request["argv"]
        sys.argv = ["ipykernel_launcher"] + argv[argv.index("-m") + 2 :]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} serve SOCKET")
