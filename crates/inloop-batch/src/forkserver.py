"""inloop's kernel fork server: fresh ipykernels forked from a process that imported them once.

`python forkserver.py serve SOCKET` imports what every ipykernel imports while it starts
(IPython, zmq, tornado, the debugger), listens on the Unix socket SOCKET, prints `ready`, and forks
one kernel per request. It exits when its standard input closes (its launcher ended).

`python -S forkserver.py client SOCKET ARGS...` is what a kernelspec runs instead of
`python -m ipykernel_launcher ARGS...`: it asks the server for a kernel with ARGS, its own working
directory, environment and standard streams, and lives exactly as long as that kernel. The kernel
joins the client's process group, so a signal sent to the group (an interrupt, a kill) reaches
it, as it reaches a kernel launched directly.

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

    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(64)
    # Children are reaped by the system; their clients watch them with pidfds.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([server, stdin], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            os._exit(0)
        if server not in ready:
            continue
        conn, _ = server.accept()
        try:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
        except Exception as error:  # a broken request: refuse it, keep serving
            conn.close()
            sys.stderr.write(f"inloop fork server: bad request: {error}\n")
            continue
        pid = os.fork()
        if pid == 0:
            server.close()
            conn.close()
            become_kernel(request, fds)
        for fd in fds:
            os.close(fd)
        try:
            conn.send(json.dumps({"pid": pid}).encode())
        finally:
            conn.close()


def become_kernel(request, fds):
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, request["pgid"])
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
        sys.argv = ["ipykernel_launcher"] + request["argv"]
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


def client(path, argv):
    # The kernel, in this process group, gets the interrupt itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.connect(path)
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "pgid": os.getpgid(0),
    }
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    reply = conn.recv(4096)
    if not reply:
        sys.stderr.write("inloop fork server: no kernel was forked\n")
        return 1
    pid = json.loads(reply)["pid"]
    try:
        watch = os.pidfd_open(pid)
    except ProcessLookupError:
        return 0
    select.select([watch], [], [])
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "client":
        sys.exit(client(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve SOCKET | client SOCKET ARGS...")
