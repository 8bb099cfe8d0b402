// The console's only script: no library, no build step. Two jobs, both optional (every page and
// every form works without it):
// 1. Live refresh. Each element with data-live="URL" is replaced by a fresh copy of URL every
//    data-every seconds (default 2) while the tab is visible. A refresh that fails leaves the last
//    content and marks it stale (data-stale says why) until one succeeds.
// 2. Forms with data-enhance are sent with fetch, so the page is not reloaded: the answer (one
//    message) is shown in #notice and every live part refreshes at once.
// Only an answer the console marked as its own fragment (X-Console-Fragment: 1, text/html) is
// inserted as HTML; anything else (a proxy's error page, a JSON error) is shown as text.
(function () {
  "use strict";
  var HEADERS = { "X-Console-Fetch": "1" };

  function isFragment(response) {
    var type = response.headers.get("Content-Type") || "";
    return response.headers.get("X-Console-Fragment") === "1" && type.indexOf("text/html") === 0;
  }

  function plain(text) {
    // A JSON error's "detail", else the text itself, cut to a readable length.
    try {
      var detail = JSON.parse(text).detail;
      if (typeof detail === "string") { return detail; }
    } catch (ignored) { /* not JSON: the text as it is */ }
    return text.length > 300 ? text.slice(0, 300) + "..." : text;
  }

  function showText(el, text, ok) {
    var p = document.createElement("p");
    p.className = "notice " + (ok ? "ok" : "bad");
    p.textContent = text;
    el.replaceChildren(p);
  }

  function refresh(el) {
    if (el.dataset.busy) { return; }
    el.dataset.busy = "1";
    fetch(el.dataset.live, { headers: HEADERS, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) { throw new Error("refresh failed (" + response.status + ")"); }
          if (!isFragment(response)) { throw new Error("refresh failed: not a console page: " + plain(text)); }
          if (el.liveText !== text) { el.innerHTML = text; el.liveText = text; }
          delete el.dataset.stale;
        });
      })
      .catch(function (error) { el.dataset.stale = error.message || "refresh failed"; })
      .finally(function () { delete el.dataset.busy; });
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(refresh);
  }

  function schedule(el) {
    var seconds = parseFloat(el.dataset.every || "2");
    window.setInterval(function () {
      if (document.visibilityState === "visible") { refresh(el); }
    }, seconds * 1000);
  }

  function send(form) {
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var notice = document.getElementById("notice");
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: HEADERS,
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.text().then(function (text) {
          if (isFragment(response)) { notice.innerHTML = text; }
          else { showText(notice, "(" + response.status + ") " + plain(text), response.ok); }
          if (response.ok) { form.reset(); }
        });
      })
      .catch(function () { notice.textContent = "No answer from the server: nothing is known to have happened."; })
      .finally(function () {
        buttons.forEach(function (b) { b.disabled = false; });
        refreshAll();
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-enhance")) { return; }
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { return; }
    send(form);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(schedule);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { refreshAll(); }
    });
  });
})();
