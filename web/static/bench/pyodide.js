// The script of bench/pyodide.html (a file: the relay's Content-Security-Policy allows no inline script).
import { loadPyodide } from '/pyodide/pyodide.mjs';
const pyodide = await loadPyodide({ indexURL: '/pyodide/' });
const value = String(pyodide.runPython('1+1'));
window.benchResult = { ms: performance.now(), value };
