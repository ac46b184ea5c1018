// Progress bars of runs that are applying (every second) or queued (every 5 s) poll the server and
// update in place; when a run settles, the page reloads so counts and buttons are fresh.
(function () {
  "use strict";
  var SETTLED = { APPLIED: true, PARTIAL: true, FAILED: true };

  function poll(el) {
    var runId = el.getAttribute("data-run");
    fetch("/console/runs/" + encodeURIComponent(runId) + "/progress", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var pct = Math.round(data.progress * 1000) / 10;
        el.querySelector(".fill").style.width = pct + "%";
        el.querySelector(".pct").textContent = Math.round(pct) + "%";
        document.querySelectorAll('[data-run-state="' + runId + '"]').forEach(function (s) { s.textContent = data.state; });
        var before = el.getAttribute("data-state");
        var now = data.pollState || data.state;  // a run with a queued retry is not settled yet
        el.setAttribute("data-state", now);
        if (SETTLED[now] && !SETTLED[before]) { window.location.reload(); return; }
        if (!SETTLED[now]) { setTimeout(function () { poll(el); }, now === "APPLYING" ? 1000 : 5000); }
      })
      .catch(function () { setTimeout(function () { poll(el); }, 3000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".progress").forEach(function (el) {
      var state = el.getAttribute("data-state");
      // APPLYING runs move; QUEUED ones wait for the sensor to launch them (polled less often).
      if (state === "APPLYING" || state === "QUEUED") { poll(el); }
    });
  });
})();
