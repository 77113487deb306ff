"""A real MCP client (the Python `mcp` SDK) calling every tool of `inloop mcp`.

Run by tests/it/mcp.rs, once over stdio and once over streamable HTTP:

    python mcp_client.py --root DIR [--relay-http http://HOST:PORT --token T]
        (--stdio PROGRAM ARG... | --http URL [--http-token T])

Prints one line `RESULT {json}` at the end: the checks passed and the relay document used.
"""

import argparse
import ast
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import httpx2
import nbformat
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "notebook_create", "notebook_list", "notebook_edit_cell", "notebook_execute_cell",
    "notebook_execute_all", "notebook_get_state", "notebook_parallel_run", "notebook_export",
}

# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

checks = 0


def field(obj, *names):
    """A field under its SDK 2.x (snake_case) or 1.x (camelCase) name."""
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    raise AttributeError(names)


def check(condition, what, detail=None):
    global checks
    if not condition:
        raise AssertionError(f"{what}: {json.dumps(detail, indent=1)[:3000] if detail is not None else ''}")
    checks += 1


async def call(session, tool, expect_error=False, progress=None, **arguments):
    """Calls `tool`; with a `progress` list, asks for progress and appends each
    (progress, total, message) to it."""
    async def on_progress(value, total, message):
        progress.append((value, total, message))

    result = await session.call_tool(tool, arguments, read_timeout_seconds=300,
                                     progress_callback=on_progress if progress is not None else None)
    text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    if expect_error:
        check(field(result, "is_error", "isError"), f"{tool} fails", text)
        return text
    check(not field(result, "is_error", "isError"), f"{tool} succeeds", text)
    return json.loads(text)


async def check_progress(updates, total, what):
    """The notifications grew at each step and ended at `total`."""
    # The SDK runs each progress callback in a task of its own: the last may still be on its way.
    for _ in range(200):
        if updates and updates[-1][0] == total:
            break
        await asyncio.sleep(0.01)
    values = [u[0] for u in updates]
    check(values and all(a < b for a, b in zip(values, values[1:])), f"{what}: progress grows",
          updates)
    check(values[-1] == total and all(u[1] == total for u in updates),
          f"{what}: progress ends at the total", updates)


def by_source(state, prefix):
    return next(c for c in state["cells"] if c["source"].startswith(prefix))


def check_recorded(result, branch, what):
    """With --git, a tool that wrote a file says which commit holds it."""
    if branch is None:
        check("history" not in result, f"{what}: no history without --git", result)
        return
    history = result.get("history") or {}
    check(history.get("branch") == branch and len(history.get("commit") or "") == 40,
          f"{what}: recorded on {branch}", result)


async def local_notebook(session, root, branch):
    nb = "work/nb.ipynb"
    created = await call(session, "notebook_create", path=nb, cells=[
        {"cell_type": "markdown", "source": "# A test notebook"},
        {"source": "x = 6 * 7"},
        {"source": "y = [1, 2, 3]\ns = 'hello'"},
        {"source": "print(6*7)"},
    ])
    check(created["notebook"] == nb and len(created["cells"]) == 4, "created with 4 cells", created)
    check(os.path.exists(os.path.join(root, nb)), "the file exists")
    check_recorded(created, branch, "notebook_create")
    again = await call(session, "notebook_create", expect_error=True, path=nb)
    check("already exists" in again, "no overwrite", again)

    listed = await call(session, "notebook_list")
    check(any(n["notebook"] == nb for n in listed["local"]), "listed", listed)

    # insert, move, replace, delete
    inserted = await call(session, "notebook_edit_cell", notebook=nb, action="insert", index=0,
                          source="tmp = 1")
    tmp = inserted["cell_id"]
    check(inserted["cells"][0]["id"] == tmp, "inserted at 0", inserted)
    check_recorded(inserted, branch, "notebook_edit_cell")
    moved = await call(session, "notebook_edit_cell", notebook=nb, action="move", cell_id=tmp,
                       to_index=-1)
    check(moved["cells"][-1]["id"] == tmp, "moved to the end", moved)
    replaced = await call(session, "notebook_edit_cell", notebook=nb, action="replace", index=-1,
                          source="tmp = 2")
    check(replaced["cell_id"] == tmp, "replaced by index", replaced)
    on_disk = nbformat.read(os.path.join(root, nb), as_version=4)
    check(on_disk.cells[-1].source == "tmp = 2", "saved after the edit", on_disk.cells[-1])
    deleted = await call(session, "notebook_edit_cell", notebook=nb, action="delete", cell_id=tmp)
    check(len(deleted["cells"]) == 4, "deleted", deleted)
    bad = await call(session, "notebook_edit_cell", expect_error=True, notebook=nb,
                     action="replace", cell_id="nope", source="1")
    check("notebook_get_state" in bad, "a bad id says what to do", bad)

    # one cell, then all
    run = await call(session, "notebook_execute_cell", notebook=nb, index=3)
    check(run["status"] == "done" and run["text"] == "42\n", "print(6*7) gives 42", run)
    check_recorded(run, branch, "notebook_execute_cell")
    progress = []
    everything = await call(session, "notebook_execute_all", notebook=nb, progress=progress)
    check(everything["status"] == "done" and len(everything["cells"]) == 3, "all ran", everything)
    check_recorded(everything, branch, "notebook_execute_all")
    await check_progress(progress, 3, "execute_all")
    check([m for _, _, m in progress][:3] == [f"cell {k} of 3: running" for k in (1, 2, 3)],
          "a message per cell", progress)

    state = await call(session, "notebook_get_state", notebook=nb)
    check([c["cell_type"] for c in state["cells"]] == ["markdown", "code", "code", "code"],
          "cell types", state["cells"])
    printed = by_source(state, "print")
    check(printed["outputs"][0]["text"] == "42\n", "outputs in the state", printed)
    check(printed["execution_count"] == 4, "execution count", printed)
    variables = {v["name"]: v for v in state["variables"]["variables"]}
    check(variables["x"]["type"] == "int" and variables["x"]["repr"] == "42", "x", variables)
    check(variables["y"]["type"] == "list" and variables["y"]["len"] == 3, "y", variables)
    check(variables["s"]["type"] == "str", "s", variables)
    check(not any(n.startswith("_") for n in variables), "no hidden names", variables)
    # The introspection bumped no count: the next run is number 5.
    await call(session, "notebook_get_state", notebook=nb)
    run = await call(session, "notebook_execute_cell", notebook=nb, cell_id=printed["id"])
    check(run["execution_count"] == 5, "introspection left the count alone", run)

    # errors and images
    await call(session, "notebook_edit_cell", notebook=nb, action="insert", source="1/0")
    failed = await call(session, "notebook_execute_cell", notebook=nb, index=-1)
    check(failed["status"] == "error" and "ZeroDivisionError" in failed["message"], "1/0", failed)
    await call(session, "notebook_edit_cell", notebook=nb, action="replace", index=-1,
               source="from IPython.display import Image, display\nimport base64\n"
                      f"display(Image(data=base64.b64decode('{PNG}')))")
    image = await call(session, "notebook_execute_cell", notebook=nb, index=-1)
    summary = image["outputs"][0]["data"]["image/png"]
    check(summary.startswith("<image/png, ") and "bytes" in summary, "image summarized", image)
    timed = await call(session, "notebook_edit_cell", notebook=nb, action="insert",
                       source="import time\ntime.sleep(30)")
    progress = []
    slow = await call(session, "notebook_execute_cell", notebook=nb, cell_id=timed["cell_id"],
                      timeout_seconds=3, progress=progress)
    check(slow["status"] == "timeout", "a slow cell is interrupted", slow)
    check(progress and progress[0][1] is None and "running for" in progress[0][2],
          "a long cell reports that it still runs", progress)
    await call(session, "notebook_edit_cell", notebook=nb, action="delete", index=-1)

    # exports
    exported = await call(session, "notebook_export", notebook=nb, format="ipynb")
    nbformat.validate(nbformat.reads(exported["text"], as_version=4))
    script = await call(session, "notebook_export", notebook=nb, format="script")
    ast.parse(script["text"])
    check("# %%" in script["text"] and "print(6*7)" in script["text"], "script", script)
    md = await call(session, "notebook_export", notebook=nb, format="markdown")
    check("# A test notebook" in md["text"] and "```python\nprint(6*7)\n```" in md["text"]
          and "42" in md["text"], "markdown", md)
    html = await call(session, "notebook_export", notebook=nb, format="html", path="out/nb.html")
    page = open(os.path.join(root, "out/nb.html")).read()
    check(page.startswith("<!DOCTYPE html>") and "data:image/png;base64" in page
          and "42" in page, "html written", html)
    check_recorded(html, branch, "notebook_export")
    nbformat.validate(nbformat.read(os.path.join(root, nb), as_version=4))

    # parallel runs of a notebook with a `parameters` cell
    params = nbformat.v4.new_notebook()
    params.cells = [
        nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(alpha * 2)"),
    ]
    nbformat.write(params, os.path.join(root, "params.ipynb"))
    progress = []
    runs = await call(session, "notebook_parallel_run", notebook="params.ipynb",
                      parameter_sets=[{"alpha": 1}, {"alpha": 5}, {"alpha": 10, "_name": "ten"}],
                      output_dir="runs", parallel=2, progress=progress)
    check(runs["runs_ok"] == 3, "3 runs ok", runs)
    await check_progress(progress, 3, "parallel_run")
    check(all(m.startswith(f"run {int(p)} of 3 finished: ") and m.endswith(" ok")
              for p, _, m in progress), "a message per finished run", progress)
    for run, expected in zip(runs["runs"], ["2\n", "10\n", "20\n"]):
        executed = nbformat.read(run["output"], as_version=4)
        nbformat.validate(executed)
        check(executed.cells[-1].outputs[0]["text"] == expected, "each run its own result",
              [run, executed.cells[-1].outputs])
    check(runs["runs"][2]["output"].endswith("params-ten.ipynb"), "_name names the file", runs)
    if branch is not None:
        commits = runs["history"]["commits"]
        check(runs["history"]["branch"] == branch and len(commits) == 3
              and all(len(c["commit"]) == 40 for c in commits), "each run recorded", runs)


async def relay_notebook(session, relay_http, token, branch):
    created = await call(session, "notebook_create")
    ref = created["notebook"]
    check(ref.startswith("relay:"), "a relay document", created)
    doc = ref.split(":", 1)[1]
    listed = await call(session, "notebook_list")
    check(any(d.get("notebook") == ref for d in listed["relay"]), "listed on the relay", listed)
    await call(session, "notebook_edit_cell", notebook=ref, action="replace", index=0,
               source="x = 6 * 7")
    inserted = await call(session, "notebook_edit_cell", notebook=ref, action="insert",
                          source="print(6*7)")
    # A second client (the relay's HTTP export) sees the agent's edits.
    request = urllib.request.Request(f"{relay_http}/api/docs/{doc}/ipynb",
                                     headers={"Authorization": f"Bearer {token}"})
    seen = nbformat.reads(urllib.request.urlopen(request).read().decode(), as_version=4)
    check([c.source for c in seen.cells] == ["x = 6 * 7", "print(6*7)"], "edit seen", seen.cells)
    run = await call(session, "notebook_execute_cell", notebook=ref,
                     cell_id=inserted["cell_id"], timeout_seconds=120)
    check(run["status"] == "done" and run["text"] == "42\n", "the server runtime ran it", run)
    check_recorded(run, branch, "notebook_execute_cell on the relay")
    state = await call(session, "notebook_get_state", notebook=ref)
    check(state["recent_executions"][0]["target"] == "server", "a server run", state)
    check(state["variables"]["available"] and state["variables"]["variables"] == [],
          "no variables yet on the server", state["variables"])
    progress = []
    everything = await call(session, "notebook_execute_all", notebook=ref, timeout_seconds=120,
                            progress=progress)
    check(everything["status"] == "done", "all ran on the server", everything)
    await check_progress(progress, 2, "execute_all on the relay")
    # The server runtime's kernel publishes its variables; the agent sees them.
    state = await call(session, "notebook_get_state", notebook=ref)
    variables = {v["name"]: v for v in state["variables"].get("variables", [])}
    check(state["variables"]["available"] and variables.get("x", {}).get("repr") == "42"
          and state["variables"]["runtime"] == "local runtime",
          "the server kernel's variables", state["variables"])
    runs = await call(session, "notebook_parallel_run", notebook=ref,
                      parameter_sets=[{"a": 1}, {"a": 2}], output_dir="relay-runs")
    check(runs["runs_ok"] == 2, "parallel runs of a relay document", runs)
    for run in runs["runs"]:
        executed = nbformat.read(run["output"], as_version=4)
        nbformat.validate(executed)
        check(executed.cells[-1].outputs[0]["text"] == "42\n", "a copy's result", run)
    exported = await call(session, "notebook_export", notebook=ref, format="ipynb")
    nbformat.validate(nbformat.reads(exported["text"], as_version=4))
    ast.parse((await call(session, "notebook_export", notebook=ref, format="script"))["text"])
    return doc


def check_refused(url, token):
    """Without the token, or with another one, a plain HTTP request gets 401 and a challenge."""
    for authorization in [None, f"Bearer not-{token}"]:
        request = urllib.request.Request(url, method="POST", data=b"{}", headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            urllib.request.urlopen(request)
            status, challenge, body = 200, None, {}
        except urllib.error.HTTPError as refused:
            status = refused.code
            challenge = refused.headers.get("WWW-Authenticate")
            body = json.loads(refused.read())
        check(status == 401 and challenge.startswith("Bearer")
              and "--http-token" in body["error_description"],
              f"refused with {authorization}", [status, challenge, body])


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--relay-http")
    parser.add_argument("--token")
    parser.add_argument("--http")
    parser.add_argument("--http-token")
    parser.add_argument("--expect-git", metavar="BRANCH",
                        help="the server records on BRANCH: check that tools say so")
    parser.add_argument("--stdio", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    headers = {}
    if args.http_token:
        check_refused(args.http, args.http_token)
        headers["Authorization"] = f"Bearer {args.http_token}"
    # The SDK's own timeouts (a long read for the event streams), with our headers.
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
    if args.http:
        transport = streamable_http_client(args.http, http_client=http)
    else:
        transport = stdio_client(StdioServerParameters(command=args.stdio[0], args=args.stdio[1:]))
    async with http, transport as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            check({t.name for t in tools} >= TOOLS, "every tool listed", [t.name for t in tools])
            for tool in tools:
                check(tool.description and field(tool, "input_schema", "inputSchema").get("type") == "object",
                      f"{tool.name} has a description and a schema", tool.name)
            await local_notebook(session, args.root, args.expect_git)
            doc = None
            if args.relay_http:
                doc = await relay_notebook(session, args.relay_http, args.token, args.expect_git)
    print("RESULT " + json.dumps({"checks": checks, "relay_doc": doc}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
