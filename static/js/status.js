// Live status on the guide page: polls the PORTAL every 2 s (never Graph); the portal coalesces checks.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var FINAL = { done: true, expired: true, cancelled: true, failed: true, none: true };
  var box = document.getElementById("status");
  if (!box) { return; }
  var text = document.getElementById("status-text");
  var texts = JSON.parse(document.getElementById("phase-texts").textContent);
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var timer = null;

  function show(status) {
    var key = status.note && status.phase === "waiting" ? "checking" : status.phase;
    box.setAttribute("data-phase", status.phase);
    box.className = "status status-" + status.phase;
    if (texts[key] && text.textContent !== texts[key]) { text.textContent = texts[key]; }
    if (FINAL[status.phase]) {
      window.clearInterval(timer);
      document.getElementById("done-link").hidden = false;
      ["status-expiry", "steps", "actions"].forEach(function (id) {
        var element = document.getElementById(id);
        if (element) { element.hidden = true; }
      });
    }
  }

  function ask(url, options) {
    return window.fetch(url, options).then(function (response) {
      if (response.status === 401 || response.redirected) { window.location.reload(); return null; }
      return response.ok ? response.json() : null;
    }).then(function (status) { if (status) { show(status); } })
      .catch(function () { /* a dropped poll is retried by the next tick */ });
  }

  function poll() {
    ask(box.getAttribute("data-status-url"), { credentials: "same-origin", cache: "no-store" });
  }

  var checkForm = document.getElementById("check-form");
  if (checkForm) {
    checkForm.addEventListener("submit", function (event) {
      event.preventDefault();
      ask(box.getAttribute("data-check-url"), {
        method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": token }
      });
    });
  }
  if (!FINAL[box.getAttribute("data-phase")]) { timer = window.setInterval(poll, POLL_MS); }
}());
