#!/usr/bin/env bash
# Builds web/dist/, the page the relay serves with `inloop serve --web web/dist`:
#
#   web/dist/pyodide/   the runtime files of npm `pyodide` (nothing is ever loaded from a CDN)
#   web/dist/wheels/    micropip's wheel, the pure-Python wheels of web/wheels.txt (downloaded from
#                       PyPI here, at build time) and a static PEP 503 index micropip reads offline
#   web/dist/kernel/    the Pyodide kernel: worker.js, inloop_kernel.py, console.html
#   web/dist/engine/    the Rust engine (crates/inloop-wasm): cargo (profile wasm-release if
#                       Cargo.toml has it, else release), wasm-bindgen --target web, wasm-opt -Oz
#   web/dist/...        everything under web/static/, copied verbatim
#
# Idempotent: downloads and builds only what is missing or stale.
#   scripts/build-web.sh             everything
#   INLOOP_SKIP_ENGINE=1 scripts/build-web.sh    everything but the Rust engine
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34mbuild-web:\033[0m %s\n' "$*" >&2; }
die() { printf 'build-web: %s\n' "$*" >&2; exit 1; }

dist=web/dist
mkdir -p "$dist/pyodide" "$dist/wheels" "$dist/kernel"

# Copies when the content differs (npm may give files old mtimes, so no `cp -u`).
sync_file() { cmp -s "$1" "$2" || cp "$1" "$2"; }

# --- Pyodide, from node_modules ------------------------------------------------------------------
pyodide_src=node_modules/pyodide
[ -f "$pyodide_src/pyodide.mjs" ] || die "node_modules/pyodide is missing: run scripts/setup.sh (npm ci)"
for f in pyodide.mjs pyodide.asm.mjs pyodide.asm.wasm python_stdlib.zip pyodide-lock.json; do
  sync_file "$pyodide_src/$f" "$dist/pyodide/$f"
done
pyodide_python=$(sed -n 's/.*"python": *"\([0-9]*\.[0-9]*\).*/\1/p' "$pyodide_src/pyodide-lock.json" | head -n1)
micropip_version=$(grep -o '"micropip-[0-9.]*-py3-none-any.whl"' "$pyodide_src/pyodide-lock.json" | head -n1 | sed 's/"micropip-\([0-9.]*\)-.*/\1/')
[ -n "$pyodide_python" ] && [ -n "$micropip_version" ] || die "cannot read python/micropip versions from pyodide-lock.json"

# --- A memory snapshot of a started interpreter (Pyodide's private _makeSnapshot/_loadSnapshot):
# the worker restores it instead of booting Python, ~0.7 s instead of ~3.3 s here. Made with the
# same node_modules/pyodide as the files above; the worker falls back to a normal start without it.
snapshot="$dist/pyodide/snapshot.bin"
snapshot_stamp="$dist/pyodide/.snapshot-sha256"
if [ -n "${INLOOP_NO_SNAPSHOT:-}" ]; then
  rm -f "$snapshot" "$snapshot_stamp"
  log "Pyodide snapshot skipped (INLOOP_NO_SNAPSHOT)"
else
  snapshot_hash=$( (sha256sum "$pyodide_src"/pyodide.mjs "$pyodide_src"/pyodide.asm.* "$pyodide_src"/python_stdlib.zip; sed -n '/^# --- A memory snapshot/,/^# --- Wheels/p' scripts/build-web.sh) | sha256sum | cut -c1-16)
  if [ "$(cat "$snapshot_stamp" 2>/dev/null)" != "$snapshot_hash" ] || [ ! -f "$snapshot" ]; then
    log "making the Pyodide memory snapshot"
    INLOOP_SNAPSHOT_OUT="$snapshot" node --input-type=module -e '
      import { writeFileSync } from "node:fs";
      import { loadPyodide } from "./node_modules/pyodide/pyodide.mjs";
      const py = await loadPyodide({ _makeSnapshot: true, env: { HOME: "/home/pyodide" } });
      // Modules the kernel imports at start (none may hold a JS object: no js, no pyodide.http).
      // (in a scratch namespace: __main__ is the namespace of the cells and must start empty)
      py.runPython(`
import os
os.environ.pop("_", None)
import ast, asyncio, base64, builtins, json, linecache, platform, re, shlex, signal, traceback, types, uuid
import pyodide.code
`, { globals: py.toPy({}) });
      writeFileSync(process.env.INLOOP_SNAPSHOT_OUT, py.makeMemorySnapshot());
    '
    echo "$snapshot_hash" > "$snapshot_stamp"
  fi
fi

# --- Wheels: micropip itself + web/wheels.txt, from PyPI; then a static index ---------------------
python=.venv/bin/python
[ -x "$python" ] || die ".venv is missing: run scripts/setup.sh"
"$python" - "$dist/wheels" "$pyodide_python" "micropip==$micropip_version" <<'PY'
import hashlib, html, pathlib, re, subprocess, sys

dest = pathlib.Path(sys.argv[1])
py_version = sys.argv[2]
micropip = sys.argv[3]


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename):
    return norm(filename.split("-")[0])


specs = []
for line in pathlib.Path("web/wheels.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)", line)
    if not m:
        sys.exit(f"build-web: web/wheels.txt: expected name==version, got {line!r}")
    specs.append((m.group(1), m.group(2)))
mp_name, mp_version = micropip.split("==")

present = {}
for whl in dest.glob("*.whl"):
    parts = whl.name.split("-")
    present[(norm(parts[0]), parts[1])] = whl.name

missing = [f"{n}=={v}" for n, v in specs + [(mp_name, mp_version)] if (norm(n), v) not in present]
if missing:
    print(f"build-web: downloading from PyPI: {' '.join(missing)}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--python-version", py_version,
         "--implementation", "py", "--abi", "none", "--platform", "any",
         "--dest", str(dest), *missing],
        check=True,
    )

projects = {}
for whl in sorted(dest.glob("*.whl")):
    if not whl.name.endswith("-none-any.whl"):
        sys.exit(f"build-web: {whl.name} is not a pure-Python wheel (py3-none-any)")
    projects.setdefault(wheel_project(whl.name), []).append(whl)
wanted = {norm(n) for n, _ in specs}
for name in sorted(wanted - projects.keys()):
    sys.exit(f"build-web: no wheel for {name}")

# PEP 503 "simple" pages, one per project (micropip: index_urls=".../simple/{package_name}/index.html").
# Relative links: micropip joins them with the page's URL, so the index works on any origin.
simple = dest / "simple"
listing = []
for name in sorted(wanted):
    links = []
    for whl in projects[name]:
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        links.append(f'<a href="../../{html.escape(whl.name)}#sha256={digest}">{html.escape(whl.name)}</a><br>')
    page = "<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n"
    # The page under the normalized name, and under the spelling of web/wheels.txt if different.
    for spelling in {name, *(n.lower() for n, _ in specs if norm(n) == name)}:
        (simple / spelling).mkdir(parents=True, exist_ok=True)
        target = simple / spelling / "index.html"
        if not target.exists() or target.read_text() != page:
            target.write_text(page)
    listing.append(f'<a href="{name}/">{name}</a><br>')
(simple / "index.html").write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(listing) + "\n</body></html>\n")
mp = [w.name for w in dest.glob("*.whl") if wheel_project(w.name) == "micropip" and f"-{mp_version}-" in w.name]
(dest / "micropip.txt").write_text(mp[0] + "\n")
print(f"build-web: wheels: {', '.join(sorted(wanted))} (+ {mp[0]})", file=sys.stderr)
PY

# --- The kernel -----------------------------------------------------------------------------------
for f in web/kernel/*; do
  sync_file "$f" "$dist/kernel/$(basename "$f")"
done

# --- Static files of the page (web/static/ as is) -----------------------------------------------
if [ -d web/static ]; then
  cp -r web/static/. "$dist/"
fi

# --- The page (esbuild) ---------------------------------------------------------------------------
# web/src/ (TypeScript over the engine; tsconfig.json at the root) -> web/dist/app/: notebook.js
# (/n/{id}), index.js (/), app.css; ES modules, minified, with source maps. The engine's module
# (/engine/inloop_wasm.js) stays an import of the page. app.css imports KaTeX's stylesheet (npm
# katex), whose fonts land in web/dist/app/fonts/ and are served by the relay like the rest (the
# policy's font-src 'self'): only the woff2 files, which every browser that runs the page reads;
# the woff and ttf fallbacks its @font-face rules also name are never fetched, so not copied.
# Rebuilt only when web/src, the npm lock or this section changed.
app_out="$dist/app"
app_stamp="$app_out/.source-sha256"
app_hash=$( (find web/src -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum package-lock.json; sed -n '/^# --- The page (esbuild)/,/^# --- The Rust engine/p' scripts/build-web.sh) | sha256sum | cut -c1-16)
if [ "$(cat "$app_stamp" 2>/dev/null)" != "$app_hash" ] || [ ! -f "$app_out/notebook.js" ]; then
  log "bundling the page (esbuild)"
  rm -rf "$app_out"
  mkdir -p "$app_out"
  node_modules/.bin/esbuild web/src/notebook.ts web/src/index.ts web/src/app.css \
    --bundle --format=esm --target=es2022 --minify --sourcemap --legal-comments=none \
    --external:/engine/inloop_wasm.js --loader:.woff2=file --external:'*.woff' --external:'*.ttf' \
    --asset-names='fonts/[name]-[hash]' --outdir="$app_out" --log-level=warning
  echo "$app_hash" > "$app_stamp"
fi

# --- The Rust engine ----------------------------------------------------------------------------
if [ -n "${INLOOP_SKIP_ENGINE:-}" ]; then
  log "engine skipped (INLOOP_SKIP_ENGINE)"
elif [ ! -f crates/inloop-wasm/Cargo.toml ]; then
  log "engine skipped: crates/inloop-wasm does not exist yet"
else
  # Cargo.toml's [profile.wasm-release] (size over speed) when it has one, else release.
  profile=release
  grep -q '^\[profile\.wasm-release\]' Cargo.toml && profile=wasm-release
  log "building the engine (cargo, wasm32-unknown-unknown, profile $profile)"
  cargo build --quiet --profile "$profile" --target wasm32-unknown-unknown -p inloop-wasm
  wasm=target/wasm32-unknown-unknown/$profile/inloop_wasm.wasm
  out="$dist/engine"
  stamp="$out/.source-sha256"
  source_hash=$( (sha256sum "$wasm"; wasm-bindgen --version; wasm-opt --version) | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$source_hash" ] || [ ! -f "$out/inloop_wasm_bg.wasm" ]; then
    rm -rf "$out"
    # wasm-opt before wasm-bindgen: Debian's wasm-opt (108) run on wasm-bindgen's output breaks
    # its externref table (the engine then fails to start with a WebAssembly.Table.set error).
    # The features are those rustc enables by default for wasm32 (1.82+).
    optimized=$(mktemp -d)
    wasm-opt -Oz \
      --enable-bulk-memory --enable-reference-types --enable-multivalue \
      --enable-mutable-globals --enable-nontrapping-float-to-int --enable-sign-ext \
      "$wasm" -o "$optimized/inloop_wasm.wasm"
    wasm-bindgen --target web --out-dir "$out" "$optimized/inloop_wasm.wasm"
    rm -rf "$optimized"
    echo "$source_hash" > "$stamp"
  fi
  raw=$(wc -c < "$out/inloop_wasm_bg.wasm")
  gz=$(gzip -9 -c "$out/inloop_wasm_bg.wasm" | wc -c)
  log "engine: inloop_wasm_bg.wasm $raw bytes, $gz bytes gzipped ($((gz / 1024)) KiB; budget 350 KB)"
fi

log "done: $dist"

# --- Service worker precache list ----------------------------------------------------------------
# web/dist/sw-manifest.json lists every file the service worker (web/static/sw.js) keeps for
# offline use, with its size and SHA-256: the pages, the view's bundle, the engine, the kernel
# worker, Pyodide (snapshot.bin included) and the wheels with their index. Not listed: the dev and
# bench pages, type declarations, build stamps, the worker and this list. Its version (a hash of
# the list and of sw.js) is stamped into web/dist/sw.js, so a new build is a new service worker
# that replaces the cache (keeping the files whose hash did not change).
node --input-type=module - "$dist" <<'JS'
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const dist = process.argv[2];
const skip = (rel) =>
  /^(bench|dev)\//.test(rel) || rel === 'sw.js' || rel === 'sw-manifest.json' ||
  rel.split('/').some((part) => part.startsWith('.')) || /\.(d\.ts|map)$/.test(rel);
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(path.join(dist, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) walk(rel);
    else if (entry.isFile() && !skip(rel)) {
      const bytes = readFileSync(path.join(dist, rel));
      files.push({ path: `/${rel}`, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
  }
};
walk('');
files.sort((a, b) => (a.path < b.path ? -1 : 1));
const sw = path.join(dist, 'sw.js');
const swSource = readFileSync(sw, 'utf8').replace(/const VERSION = '[^']*';/, "const VERSION = '__INLOOP_SW_VERSION__';");
const version = createHash('sha256').update(JSON.stringify(files)).update(swSource).digest('hex').slice(0, 16);
const json = `${JSON.stringify({ version, files }, null, 1)}\n`;
writeFileSync(path.join(dist, 'sw-manifest.json'), json);
const stamped = swSource.replace("const VERSION = '__INLOOP_SW_VERSION__';", `const VERSION = '${version}';`);
if (stamped === swSource) throw new Error('build-web: web/dist/sw.js has no VERSION placeholder');
writeFileSync(sw, stamped);
const mb = (files.reduce((sum, f) => sum + f.size, 0) / 1e6).toFixed(1);
console.error(`build-web: service worker ${version}: ${files.length} files, ${mb} MB precached`);
JS
