// Live updates by polling: every few seconds ask /api/changes whether the database changed;
// when it did, fetch this page again and swap the element marked data-live="1" in place.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) return;
  var every = 1000 * (parseFloat(document.body.dataset.poll) || 5);
  var last = null;
  function key(c) { return [c.incidents, c.updated, c.alerts, c.actions].join("/"); }
  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live]");
        if (fresh) { live.innerHTML = fresh.innerHTML; live.dataset.refreshed = String(Date.now()); }
      });
  }
  function poll() {
    fetch("/api/changes", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (c) {
        if (!c) return;
        var k = key(c);
        var changed = last !== null && k !== last;
        last = k;
        return changed ? refresh() : null;
      })
      .catch(function () {})
      .then(function () { setTimeout(poll, every); });
  }
  poll();
})();
