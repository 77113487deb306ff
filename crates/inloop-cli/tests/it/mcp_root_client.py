"""`inloop mcp --root` through a real MCP client (the Python `mcp` SDK): every way out of the
root is refused with a tool error naming the root, and what stays inside works.

Run by tests/it/mcp_root.rs, which made ROOT (with `inside.ipynb` and the links `link-in.ipynb`
to it, `link-out.ipynb` to OUTSIDE/secret.ipynb and `dir-out` to OUTSIDE) and checks afterwards
that nothing outside ROOT changed:

    python mcp_root_client.py --root ROOT --outside OUTSIDE --stdio PROGRAM ARG...

Prints one line `RESULT {json}` at the end: the checks passed.
"""

import argparse
import asyncio
import json
import os

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import mcp_client
from mcp_client import call, check


async def refused(session, root, given, tool, **arguments):
    text = await call(session, tool, expect_error=True, **arguments)
    check(text.startswith(f"path {given} is outside the root {root}"),
          f"{tool} refuses {given}", text)


async def confined(session, root, outside):
    secret = os.path.join(outside, "secret.ipynb")
    # `..`, an absolute path, `..` past folders that do not exist yet, a link to a folder out.
    for given in ["../outside/new.ipynb", os.path.join(outside, "new.ipynb"),
                  "no/such/folders/../../../../outside/new.ipynb", "dir-out/new.ipynb"]:
        await refused(session, root, given, "notebook_create", path=given,
                      cells=[{"source": "1"}])
        await refused(session, root, given, "notebook_export", notebook="inside.ipynb",
                      format="script", path=given)
    # A link to a notebook outside: neither read nor written.
    for given in ["link-out.ipynb", "dir-out/secret.ipynb", "../outside/secret.ipynb", secret]:
        await refused(session, root, given, "notebook_get_state", notebook=given)
        await refused(session, root, given, "notebook_edit_cell", notebook=given,
                      action="replace", index=0, source="overwritten")
        await refused(session, root, given, "notebook_execute_all", notebook=given)
    await refused(session, root, "link-out.ipynb", "notebook_export", notebook="inside.ipynb",
                  format="ipynb", path="link-out.ipynb")
    await refused(session, root, "dir-out", "notebook_parallel_run", notebook="inside.ipynb",
                  parameter_sets=[{"a": 1}], output_dir="dir-out")

    # Inside: a link to a notebook inside, and folders made as needed.
    state = await call(session, "notebook_get_state", notebook="link-in.ipynb", variables=False)
    check(state["cells"][0]["source"] == "inside = 1", "a link inside reads its notebook", state)
    created = await call(session, "notebook_create", path="new/deeper/made.ipynb")
    check(os.path.isfile(os.path.join(root, "new/deeper/made.ipynb")),
          "a notebook in folders that did not exist", created)
    listed = await call(session, "notebook_list")
    names = sorted(n["notebook"] for n in listed["local"])
    check(names == ["inside.ipynb", "link-in.ipynb", "new/deeper/made.ipynb"],
          "the listing leaves out what leads outside", listed)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--outside", required=True)
    parser.add_argument("--stdio", nargs=argparse.REMAINDER, required=True)
    args = parser.parse_args()
    server = StdioServerParameters(command=args.stdio[0], args=args.stdio[1:])
    async with stdio_client(server) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            await confined(session, args.root, args.outside)
    print("RESULT " + json.dumps({"checks": mcp_client.checks}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
