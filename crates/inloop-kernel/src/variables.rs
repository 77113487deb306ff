//! The user's variables in a Python kernel, each with its type and a short repr: what an agent's
//! `notebook_get_state` and a variable inspector show.

use inloop_doc::Output;
use serde_json::Value;

use crate::{ExecEvent, Kernel};

/// Why the variables could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VariablesError {
    #[error(transparent)]
    Kernel(#[from] crate::Error),
    #[error("the kernel did not answer the introspection (not a Python kernel?)")]
    NoAnswer,
}

/// Most variables listed; a namespace with more is cut (and says so).
pub const MAX_VARIABLES: usize = 200;

/// What the introspection prints its answer after.
const MARKER: &str = "__INLOOP_VARIABLES__";

/// Lists the user's variables as one line of JSON after [`MARKER`]. It runs as an ordinary
/// execution ([`Kernel`] has no silent one), so it first takes back what IPython recorded for
/// it: the execution count (incremented before the code runs), its input history entry, and
/// the `_i`, `_ii`, `_iii` and `_iN` variables. It leaves no name behind and has no result (no
/// `Out` entry, no `_`).
const INTROSPECT: &str = r#"def __inloop_variables(limit):
    import json, reprlib, types
    ip = get_ipython()
    n = ip.execution_count - 1
    hm = ip.history_manager
    try:
        with hm.db_input_cache_lock:
            if hm.db_input_cache and hm.db_input_cache[-1][0] == n:
                hm.db_input_cache.pop()
        if len(hm.input_hist_raw) > 1:
            hm.input_hist_parsed.pop()
            hm.input_hist_raw.pop()
        raw = hm.input_hist_raw
        hm._i00, hm._i, hm._ii = hm._i, hm._ii, hm._iii
        hm._iii = raw[-4] if len(raw) >= 4 else ''
        ns = ip.user_ns
        ns.pop('_i%d' % n, None)
        ns.update({'_i': hm._i, '_ii': hm._ii, '_iii': hm._iii})
    except Exception:
        pass
    ip.execution_count = n
    short = reprlib.Repr()
    short.maxstring = 100
    short.maxother = 100
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    hidden = getattr(ip, 'user_ns_hidden', {})
    out = []
    for name, value in list(ip.user_ns.items()):
        if name.startswith('_') or name in hidden or name in ('In', 'Out', 'exit', 'quit', 'get_ipython'):
            continue
        if isinstance(value, types.ModuleType):
            continue
        if len(out) == limit:
            out.append({'name': '...', 'type': 'truncated', 'repr': 'more variables than %d' % limit})
            break
        t = type(value)
        entry = {'name': name, 'type': t.__name__ if t.__module__ == 'builtins' else t.__module__ + '.' + t.__qualname__}
        try:
            entry['repr'] = short.repr(value)
        except Exception as e:
            entry['repr'] = '<repr failed: %s>' % type(e).__name__
        shape = getattr(value, 'shape', None)
        if isinstance(shape, tuple):
            entry['shape'] = list(shape)
        elif isinstance(value, (list, tuple, dict, set, str, bytes)):
            entry['len'] = len(value)
        out.append(entry)
    print('__INLOOP_VARIABLES__' + json.dumps(out, default=str))
"#;

/// Reads the user's variables from `kernel` (an IPython kernel, or Pyodide's), as a JSON list
/// of `{name, type, repr, shape?, len?}` (at most [`MAX_VARIABLES`], then one entry of type
/// `truncated`), without changing what the
/// user sees: the next cell gets the execution count it would have had, and no name is left
/// behind. Call it while the kernel runs nothing else.
pub async fn read_variables<K: Kernel>(kernel: &K) -> Result<Value, VariablesError> {
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let code = format!("{INTROSPECT}__inloop_variables({MAX_VARIABLES})\ndel __inloop_variables\n");
    kernel.execute(&code, events).await?;
    // `execute` returns once every output arrived, so they are all in the channel.
    let mut text = String::new();
    while let Ok(event) = received.try_recv() {
        if let ExecEvent::Output(Output::Stream { text: part, .. }) = event {
            text.push_str(&part);
        }
    }
    text.lines()
        .find_map(|line| line.strip_prefix(MARKER))
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or(VariablesError::NoAnswer)
}
