"""inloop's Python kernel inside Pyodide (loaded by worker.js).

What a Jupyter user expects from a cell, without IPython: streamed stdout/stderr, the last
expression's value as an execute_result, display() with rich reprs and display handles,
clear_output(), IPython-like tracebacks pointing at the cell's lines, top-level await,
KeyboardInterrupt on interrupt, and `%pip install NAME` through micropip from our own origin.

Every message goes out through the `post` callable given to `setup()`: a JSON string that the
worker parses, stamps with the id of the running execution and posts to the page.
"""

import ast
import asyncio
import base64
import builtins
import json
import linecache
import re
import shlex
import signal
import sys
import time
import traceback
import types
import uuid

from pyodide.code import CodeRunner

_post = None  # JS function(str) set by setup()
_wheels_url = None  # ".../wheels/" on our origin
_micropip_loader = None  # JS async function() that loads micropip's wheel
# The user's namespace is __main__'s, as in IPython: pickle, dataclasses and typing find cell
# classes through sys.modules["__main__"].
_namespace = sys.modules["__main__"].__dict__
_current_task = None
_CELL_PREFIX = "<cell-"


def _send(msg):
    _post(json.dumps(msg, default=str))


# --- Streams --------------------------------------------------------------------------------------


class _Stream:
    """A text stream that sends what is written as nbformat stream outputs while the cell runs.

    Complete lines go out at once while a small token bucket allows (bursts of 10 messages, then
    50 a second); beyond it they wait for the next write, a sleep, the worker's timer or the end
    of the cell, so a tight print loop sends a message per 20 ms rather than one per line.
    """

    _CAPACITY = 10.0
    _RATE = 50.0  # tokens per second
    _MAX_PENDING = 64 * 1024

    def __init__(self, name):
        self.name = name
        self._buffer = []
        self._size = 0
        self._tokens = self._CAPACITY
        self._stamp = time.monotonic()
        self.encoding = "utf-8"
        self.errors = "replace"

    # io.TextIOBase-ish surface that libraries look at.
    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("stream has no file descriptor")

    @property
    def closed(self):
        return False

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= self._MAX_PENDING:
            self.flush()
        elif "\n" in text or "\r" in text:  # lines, and progress bars that rewrite theirs
            now = time.monotonic()
            self._tokens = min(self._CAPACITY, self._tokens + (now - self._stamp) * self._RATE)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.flush()
            else:
                _schedule_flush()
        else:
            _schedule_flush()
        return len(text)

    def flush(self):
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        _send({"type": "output", "output": {"output_type": "stream", "name": self.name, "text": text}})


_stdout = _Stream("stdout")
_stderr = _Stream("stderr")
_flush_scheduled = False
_schedule_js = None  # JS function(ms) that calls flush_streams() later (set by setup)
_js_sleep = None  # JS function(ms) -> True if interrupted, False, None (no SharedArrayBuffer)


def _schedule_flush():
    global _flush_scheduled
    if not _flush_scheduled and _schedule_js is not None:
        _flush_scheduled = True
        _schedule_js(50)


def flush_streams():
    """Sends whatever the streams hold (the worker's timer and the end of a cell call this)."""
    global _flush_scheduled
    _flush_scheduled = False
    _stdout.flush()
    _stderr.flush()


_original_sleep = time.sleep


def _sleep(seconds):
    """time.sleep that flushes the streams first and can be interrupted (Pyodide's own sleep
    swallows an interrupt that arrives while it waits)."""
    flush_streams()
    seconds = float(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    interrupted = _js_sleep(seconds * 1000) if _js_sleep is not None else None
    if interrupted is None:
        _original_sleep(seconds)
    elif interrupted:
        raise KeyboardInterrupt


# --- Rich display ---------------------------------------------------------------------------------

_REPR_METHODS = [
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
]
_BINARY = {"image/png", "image/jpeg", "application/pdf"}


def _jsonable(mime, value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if mime in _BINARY or not mime.startswith("text/"):
            return base64.b64encode(value).decode("ascii")
        return value.decode("utf-8", "replace")
    if mime in _BINARY and isinstance(value, str):
        return value
    if mime == "application/json" or mime.endswith("+json"):
        return json.loads(json.dumps(value, default=str))
    return value if isinstance(value, str) else str(value)


def _repr_text(obj):
    try:
        return repr(obj)
    except Exception as e:  # a broken __repr__ must not break the cell
        return f"<{type(obj).__name__} object (repr failed: {type(e).__name__}: {e})>"


def format_bundle(obj, include=None, exclude=None):
    """The (data, metadata) mime bundle of `obj`, as IPython's display formatter builds it."""
    data, metadata = {}, {}

    def wanted(mime):
        return (include is None or mime in include) and (exclude is None or mime not in exclude)

    method = getattr(type(obj), "_repr_mimebundle_", None)
    if method is not None and not isinstance(obj, type):
        try:
            bundle = obj._repr_mimebundle_(include=include, exclude=exclude)
        except Exception as e:
            _warn_repr(obj, "_repr_mimebundle_", e)
            bundle = None
        if isinstance(bundle, tuple):
            bundle, md = bundle
            metadata.update(md or {})
        for mime, value in (bundle or {}).items():
            if wanted(mime) and value is not None:
                data[mime] = _jsonable(mime, value)
    if not isinstance(obj, type):
        for mime, name in _REPR_METHODS:
            if mime in data or not wanted(mime) or getattr(type(obj), name, None) is None:
                continue
            try:
                value = getattr(obj, name)()
            except NotImplementedError:
                continue
            except Exception as e:
                _warn_repr(obj, name, e)
                continue
            if value is None:
                continue
            if isinstance(value, tuple) and len(value) == 2:
                value, md = value
                if md:
                    metadata[mime] = md
            data[mime] = _jsonable(mime, value)
    if "text/plain" not in data:
        data["text/plain"] = _repr_text(obj)
    return data, metadata


def _warn_repr(obj, name, error):
    print(f"{type(obj).__name__}.{name}() failed: {type(error).__name__}: {error}", file=sys.stderr)


class DisplayHandle:
    """What `display(..., display_id=...)` returns: update or show again the same output."""

    def __init__(self, display_id=None):
        self.display_id = display_id or uuid.uuid4().hex

    def __repr__(self):
        return f"<DisplayHandle display_id={self.display_id}>"

    def display(self, obj, **kwargs):
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        display(obj, display_id=self.display_id, update=True, **kwargs)


def display(*objs, include=None, exclude=None, metadata=None, transient=None, display_id=None,
            raw=False, clear=False, update=False, **kwargs):
    """IPython's display(): a display_data output per object (update=True: update_display)."""
    flush_streams()
    if clear:
        clear_output(wait=True)
    if display_id is True:
        display_id = uuid.uuid4().hex
    for obj in objs:
        if raw:
            data, md = dict(obj), {}
        else:
            data, md = format_bundle(obj, include, exclude)
        if metadata:
            md = {**md, **metadata}
        if update:
            if display_id is None:
                raise TypeError("update=True needs a display_id")
            _send({"type": "update_display", "displayId": str(display_id), "data": data, "metadata": md})
            continue
        output = {"output_type": "display_data", "data": data, "metadata": md}
        extra = dict(transient or {})
        if display_id is not None:
            extra["display_id"] = str(display_id)
        if extra:
            output["transient"] = extra
        _send({"type": "output", "output": output})
    if display_id is not None:
        return DisplayHandle(str(display_id))
    return None


def update_display(obj, *, display_id, **kwargs):
    display(obj, display_id=display_id, update=True, **kwargs)


def clear_output(wait=False):
    flush_streams()
    _send({"type": "clear_output", "wait": bool(wait)})


# --- The IPython.display shim ---------------------------------------------------------------------


class _DisplayObject:
    _mime = "text/plain"

    def __init__(self, data=None, url=None, filename=None, metadata=None):
        if filename is not None and data is None:
            mode = "rb" if self._mime in _BINARY else "r"
            with open(filename, mode) as f:
                data = f.read()
        self.data = data
        self.url = url
        self.metadata = metadata or {}

    def __repr__(self):
        return f"<IPython.core.display.{type(self).__name__} object>"


class HTML(_DisplayObject):
    def _repr_html_(self):
        return self.data


class Markdown(_DisplayObject):
    def _repr_markdown_(self):
        return self.data


class Latex(_DisplayObject):
    def _repr_latex_(self):
        return self.data


class Math(_DisplayObject):
    def _repr_latex_(self):
        text = (self.data or "").strip("$")
        return f"$\\displaystyle {text}$"


class SVG(_DisplayObject):
    def _repr_svg_(self):
        data = self.data
        return data.decode("utf-8") if isinstance(data, bytes) else data


class Javascript(_DisplayObject):
    def _repr_javascript_(self):
        return self.data


class JSON(_DisplayObject):
    def __init__(self, data=None, url=None, filename=None, expanded=False, metadata=None, root="root", **kwargs):
        if isinstance(data, str) and filename is None and url is None:
            data = json.loads(data)
        super().__init__(data, url, filename, metadata)
        if filename is not None and isinstance(self.data, str):
            self.data = json.loads(self.data)
        self.metadata = {"expanded": expanded, "root": root, **self.metadata}

    def _repr_json_(self):
        return self.data, self.metadata


class Image(_DisplayObject):
    def __init__(self, data=None, url=None, filename=None, format=None, embed=None, width=None,
                 height=None, metadata=None, alt=None, **kwargs):
        if filename is not None and data is None:
            with open(filename, "rb") as f:
                data = f.read()
            format = format or filename.rsplit(".", 1)[-1].lower()
        if isinstance(data, str) and url is None and not data.startswith("<"):
            url, data = data, None
        self.data = data
        self.url = url
        if format is None and isinstance(data, (bytes, bytearray)):
            format = "jpeg" if bytes(data[:3]) == b"\xff\xd8\xff" else "png"
        self.format = {"jpg": "jpeg"}.get(format, format) or "png"
        md = dict(metadata or {})
        if width:
            md["width"] = width
        if height:
            md["height"] = height
        if alt:
            md["alt"] = alt
        self.metadata = md

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.data is None:
            return {"text/html": f'<img src="{self.url}"/>'}, {}
        mime = f"image/{self.format}"
        return {mime: bytes(self.data)}, ({mime: self.metadata} if self.metadata else {})


class Pretty(_DisplayObject):
    def __repr__(self):
        return str(self.data)


def _make_ipython_modules():
    display_mod = types.ModuleType("IPython.display", "inloop's stand-in for IPython.display")
    for name, value in {
        "display": display, "update_display": update_display, "clear_output": clear_output,
        "DisplayHandle": DisplayHandle, "DisplayObject": _DisplayObject, "HTML": HTML,
        "Markdown": Markdown, "Latex": Latex, "Math": Math, "SVG": SVG, "JSON": JSON,
        "Image": Image, "Javascript": Javascript, "Pretty": Pretty,
    }.items():
        setattr(display_mod, name, value)
    display_mod.__all__ = [n for n in vars(display_mod) if not n.startswith("_")]
    core = types.ModuleType("IPython.core")
    core.__path__ = []
    core.display = display_mod
    ipython = types.ModuleType("IPython", "inloop's stand-in for IPython (display only)")
    ipython.__path__ = []
    ipython.display = display_mod
    ipython.core = core
    ipython.get_ipython = lambda: None
    ipython.version_info = (0, 0, 0, "inloop")
    ipython.__version__ = "0.0.0+inloop"
    sys.modules.setdefault("IPython", ipython)
    sys.modules.setdefault("IPython.display", display_mod)
    sys.modules.setdefault("IPython.core", core)
    sys.modules.setdefault("IPython.core.display", display_mod)


# --- %pip ---------------------------------------------------------------------------------------

_PIP_LINE = re.compile(r"^([ \t]*)[%!]pip[ \t]+(.*?)[ \t]*$")


def _transform_magics(code):
    """Rewrites `%pip ...` lines into an awaited call, keeping every line where it was."""
    lines = code.split("\n")
    for i, line in enumerate(lines):
        m = _PIP_LINE.match(line)
        if m:
            lines[i] = f"{m.group(1)}await __inloop_pip__({m.group(2)!r})"
    return "\n".join(lines)


async def ensure_micropip():
    if "micropip" not in sys.modules:
        await _micropip_loader()
    import micropip

    urls = [_wheels_url + "simple/{package_name}/index.html", "PYPI"]
    if getattr(micropip, "_inloop_index", None) != urls:
        micropip.set_index_urls(urls)
        micropip._inloop_index = urls
    return micropip


class PipError(Exception):
    """%pip could not do what it was asked (shown without the kernel's and micropip's frames)."""


class StdinNotImplementedError(RuntimeError):
    """What IPython raises when the frontend cannot answer input requests."""


PipError.__module__ = StdinNotImplementedError.__module__ = "builtins"  # shown unqualified


def _input(prompt=""):
    raise StdinNotImplementedError("input() is not available: the browser kernel cannot ask the page for input")


async def _pip(args):
    try:
        words = shlex.split(args)
    except ValueError as e:
        print(f"%pip: {e}", file=sys.stderr)
        return
    if not words or words[0] not in ("install", "uninstall", "list"):
        print("%pip: only `install`, `uninstall` and `list` work in the browser", file=sys.stderr)
        return
    micropip = await ensure_micropip()
    command, rest = words[0], words[1:]
    if command == "list":
        print(micropip.list())
        return
    packages, pre, reinstall = [], False, False
    for word in rest:
        if word in ("-q", "--quiet", "-v", "--verbose", "--no-cache-dir", "-y", "--yes"):
            continue
        if word in ("-U", "--upgrade", "--force-reinstall"):
            reinstall = True
        elif word == "--pre":
            pre = True
        elif word.startswith("-"):
            print(f"%pip: option {word} is ignored in the browser", file=sys.stderr)
        else:
            packages.append(word)
    if not packages:
        print(f"%pip {command}: no package named", file=sys.stderr)
        return
    if command == "uninstall":
        micropip.uninstall(packages)
        print(f"Uninstalled {' '.join(packages)}")
        return
    before = set(micropip.list())
    try:
        await micropip.install(packages, pre=pre, reinstall=reinstall)
    except Exception as e:
        raise PipError(
            f"could not install {' '.join(packages)}: {e}\n"
            "(this server provides the pure-Python wheels of its web/wheels.txt; others come from PyPI when online)"
        ) from None
    installed = micropip.list()
    new = sorted(f"{installed[name].name}-{installed[name].version}" for name in set(installed) - before)
    if new:
        print("Successfully installed " + " ".join(new))
    else:
        print("Requirement already satisfied: " + " ".join(packages))
    if reinstall:
        print("Note: you may need to restart the kernel to use updated packages.")


# --- Errors ----------------------------------------------------------------------------------------


def _cell_traceback(exc):
    """The traceback from the first frame of a cell on (the kernel's own frames dropped)."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(_CELL_PREFIX):
        tb = tb.tb_next
    return tb


def _drop_trailing_kernel_frames(exc):
    """An error of the kernel's own making (an interrupted time.sleep, %pip) shows the cell's line last."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    cells = [i for i, t in enumerate(frames) if t.tb_frame.f_code.co_filename.startswith(_CELL_PREFIX)]
    if cells and all(t.tb_frame.f_code.co_filename == __file__ for t in frames[cells[-1] + 1:]):
        frames[cells[-1]].tb_next = None


def error_output(exc):
    if isinstance(exc, asyncio.CancelledError):  # interrupt() cancelled the cell's await
        exc = KeyboardInterrupt().with_traceback(exc.__traceback__)
    exc.__traceback__ = _cell_traceback(exc)
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None and chained.__traceback__ is not None:
            tb = _cell_traceback(chained)
            if tb is not None:
                chained.__traceback__ = tb
    if isinstance(exc, (KeyboardInterrupt, PipError, StdinNotImplementedError)):
        _drop_trailing_kernel_frames(exc)
    lines = "".join(traceback.format_exception(exc)).rstrip("\n").split("\n")
    if isinstance(exc, SyntaxError) and lines and lines[0].startswith("Traceback"):
        lines = lines[1:]
    ename = type(exc).__name__
    evalue = str(exc)
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines}


# --- Execution ------------------------------------------------------------------------------------


async def _guarded(awaitable):
    try:
        return False, await awaitable
    except BaseException as exc:
        return True, exc


async def run(code, count):
    """Runs one cell; sends its outputs; returns "ok" or "error"."""
    global _current_task
    filename = f"{_CELL_PREFIX}{count}>"
    source = _transform_magics(code)
    # The user's own text for the traceback's lines (the %pip rewrite keeps line numbers).
    linecache.cache[filename] = (len(code), None, code.splitlines(True) or ["\n"], filename)
    if isinstance(_namespace.get("In"), list):
        _namespace["In"].append(code)
    status = "ok"
    try:
        if "micropip" in source and "micropip" not in sys.modules and re.search(r"\bimport\s+micropip|\bfrom\s+micropip\b", source):
            await ensure_micropip()
        runner = CodeRunner(
            source,
            filename=filename,
            return_mode="last_expr",
            quiet_trailing_semicolon=True,
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dedent=False,
        )
        runner.compile()
        # A task, so that interrupt() can cancel a cell that waits in an await. _guarded keeps
        # KeyboardInterrupt inside the task (asyncio re-raises it out of the event loop otherwise).
        _current_task = asyncio.ensure_future(_guarded(runner.run_async(_namespace)))
        try:
            raised, result = await _current_task
        finally:
            _current_task = None
        if raised:
            raise result
        flush_streams()
        if result is not None:
            _namespace["___"] = _namespace.get("__")
            _namespace["__"] = _namespace.get("_")
            _namespace["_"] = result
            if isinstance(_namespace.get("Out"), dict):
                _namespace["Out"][count] = result
            data, metadata = format_bundle(result)
            _send({"type": "output", "output": {"output_type": "execute_result", "execution_count": count, "data": data, "metadata": metadata}})
    except BaseException as exc:  # KeyboardInterrupt and SystemExit included: the kernel lives on
        flush_streams()
        status = "error"
        try:
            _send({"type": "output", "output": error_output(exc)})
        except BaseException as again:
            _send({"type": "output", "output": {"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": [f"{type(exc).__name__}: {exc}", f"(formatting the traceback failed: {again!r})"]}})
    finally:
        flush_streams()
    return status


def _on_sigint(signum, frame):
    """Pyodide turns a 2 in the interrupt buffer into SIGINT at the next check of the eval loop.
    In a cell's code (or what it calls) that is a KeyboardInterrupt; anywhere else (the kernel
    or the event loop between two steps of an async cell) raising would lose the cell's task, so
    the task is cancelled instead; with no cell running the interrupt is stale and dropped."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_CELL_PREFIX):
            raise KeyboardInterrupt
        frame = frame.f_back
    interrupt()


def interrupt():
    """Interrupts a cell that waits in an `await` (the interrupt buffer only stops running code)."""
    task = _current_task
    if task is not None and not task.done():
        task.cancel()
        return True
    return False


def kernel_info():
    import platform

    import pyodide

    version = ".".join(map(str, sys.version_info[:3]))
    return json.dumps({
        "language": "python",
        "language_version": version,
        "implementation": "pyodide",
        "implementation_version": pyodide.__version__,
        "banner": f"Python {sys.version.split()[0]} on Pyodide {pyodide.__version__} ({platform.platform()}), in a Web Worker",
        "language_info": {
            "name": "python",
            "version": version,
            "mimetype": "text/x-python",
            "file_extension": ".py",
            "pygments_lexer": "ipython3",
            "codemirror_mode": {"name": "ipython", "version": 3},
            "nbconvert_exporter": "python",
        },
    })


def setup(post, schedule_flush, js_sleep, wheels_url, micropip_loader):
    global _post, _schedule_js, _js_sleep, _wheels_url, _micropip_loader
    _post = post
    _js_sleep = js_sleep
    # A memory snapshot (see worker.js) carries the state of its build: draw new random seeds.
    import random

    random.seed()
    sys.path[:] = list(dict.fromkeys(sys.path))
    _schedule_js = schedule_flush
    _wheels_url = wheels_url
    _micropip_loader = micropip_loader
    sys.stdout = _stdout
    sys.stderr = _stderr
    time.sleep = _sleep
    signal.signal(signal.SIGINT, _on_sigint)
    builtins.display = display
    builtins.input = _input
    builtins.__inloop_pip__ = _pip
    _make_ipython_modules()
    _namespace.setdefault("In", [""])  # IPython's input and output history
    _namespace.setdefault("Out", {})
