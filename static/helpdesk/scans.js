// A running scan's page: poll its status (JSON, worded by the server), move the progress bar, and reload
// once the scan has finished or failed so that the results table shows.
(function () {
  "use strict";
  var live = document.getElementById("scan-live");
  if (!live) { return; }
  var url = live.getAttribute("data-status-url");
  var every = Math.max(1, parseInt(live.getAttribute("data-poll-seconds"), 10) || 2) * 1000;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        if (body.state !== "running") { window.location.reload(); return; }
        var bar = document.getElementById("scan-progress");
        if (bar) { bar.value = body.percent; bar.textContent = body.percent + " %"; }
        var words = document.getElementById("scan-words");
        if (words) { words.textContent = body.words; }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { window.setTimeout(poll, every); });
  }

  window.setTimeout(poll, every);
}());
