// The notebook page's first script (web/static/notebook.html), run before the page's modules.
// A file rather than an inline script: the relay's Content-Security-Policy allows no inline
// script (docs/SECURITY.md).
//
// 1. The token. A link's `?token=` leaves the address bar at once (history.replaceState), so no
//    URL that is shown, bookmarked, copied, kept in history or sent as a Referer carries it, and
//    goes to this tab's sessionStorage, so a reload of the tab finds it. Without one in the URL,
//    the tab's own (a reload, or one handed over by the list page) and then the admin token this
//    browser remembers (localStorage, kept by the list page) are used. The page reads the result
//    from `window.inloopBoot.token`; the storage keys are those of web/src/common.ts
//    (tabTokenKey, ADMIN_TOKEN_KEY).
// 2. The Pyodide kernel worker, so Python loads while the engine and the page do (the engine
//    adopts it). Not for links that cannot run cells (read, edit): no kernel there.
(function () {
  var match = location.pathname.match(/^\/n\/([^/]+)/);
  var docId = match ? decodeURIComponent(match[1]) : '';
  var tabKey = 'inloop.token.' + docId;

  function storage(kind) {
    try {
      return window[kind];
    } catch (e) {
      return null; // storage disabled: the page works from the URL's token alone
    }
  }
  var session = storage('sessionStorage');
  var local = storage('localStorage');

  var url = new URL(location.href);
  var token = url.searchParams.get('token');
  if (token !== null) {
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    if (session && docId) session.setItem(tabKey, token);
  } else {
    token = (session && docId && session.getItem(tabKey)) || (local && local.getItem('inloop.adminToken'));
  }

  var role = null;
  try {
    var part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    role = JSON.parse(atob(part + '==='.slice((part.length + 3) % 4))).role;
  } catch (e) {
    /* unreadable: start the worker, the relay decides */
  }
  window.inloopBoot = { docId: docId, token: token || null };
  window.startedWorker = role === 'read' || role === 'edit' ? null : new Worker('/kernel/worker.js', { type: 'module' });
})();
