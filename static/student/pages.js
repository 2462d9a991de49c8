// The student's pages, without inline script (the CSP forbids it):
// - news at the top of a page (a notice) gets the focus;
// - the diagnosis page's "set up" button shows progress and cannot be pressed twice;
// - the guide page polls the PORTAL every 2 s (never Graph; the worker checks), shows the time
//   left and a warning near the end as the server words them, gives feedback on "check now", and moves
//   the focus to the status when its phase changes.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function byId(id) { return document.getElementById(id); }

  // -- a page that opens with news (stopped, refused, signed out by the time-out): focus it, so a screen
  //    reader reads it first and a keyboard user starts from there ------------------------------------
  var news = document.querySelector("main .notice");
  if (news) {
    news.setAttribute("tabindex", "-1");
    news.focus();
  }

  // -- one submit only, with progress ------------------------------------------------------------
  var unlockForm = byId("unlock-form");
  if (unlockForm) {
    var unlockButton = byId("unlock");
    var idleLabel = unlockButton.textContent;
    unlockForm.addEventListener("submit", function (event) {
      if (unlockForm.getAttribute("data-sent")) { event.preventDefault(); return; }
      unlockForm.setAttribute("data-sent", "1");
      unlockButton.setAttribute("aria-disabled", "true");
      unlockButton.classList.add("busy");
      unlockButton.textContent = unlockButton.getAttribute("data-busy-text");
      byId("unlock-progress").hidden = false;
    });
    // Back to a page the browser kept in memory: the button works again.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) { return; }
      unlockForm.removeAttribute("data-sent");
      unlockButton.removeAttribute("aria-disabled");
      unlockButton.classList.remove("busy");
      unlockButton.textContent = idleLabel;
      byId("unlock-progress").hidden = true;
    });
  }

  // -- live status on the guide page ---------------------------------------------------------------
  var box = byId("status");
  if (!box) { return; }
  var checkTexts = JSON.parse(byId("check-texts").textContent);
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var timer = null;

  function setText(id, value) {
    var element = byId(id);
    if (!element) { return; }
    if (element.textContent !== value) { element.textContent = value || ""; }
    element.hidden = !value;
  }

  function show(status) {
    var before = box.getAttribute("data-phase");
    box.setAttribute("data-phase", status.phase);
    box.className = "status status-" + status.phase;
    setText("status-text", status.text);
    setText("status-expiry", status.ends);
    setText("status-warning", status.warning);
    if (status.final) {
      window.clearInterval(timer);
      byId("steps-area").hidden = true;
      byId("done-link").hidden = false;
      byId("finished").hidden = status.phase !== "done";
    }
    if (before !== status.phase) { box.focus(); }
  }

  function ask(url, options) {
    return window.fetch(url, options).then(function (response) {
      // Signed out (a time-out, or another tab): reload, and the start page says what happened.
      if (response.status === 401 || response.redirected) { window.location.reload(); return null; }
      return response.ok ? response.json() : null;
    }).then(function (status) {
      if (status) { show(status); }
      return status;
    });
  }

  function poll() {
    ask(box.getAttribute("data-status-url"), { credentials: "same-origin", cache: "no-store" })
      .catch(function () { /* a dropped poll is retried by the next tick */ });
  }

  var checkForm = byId("check-form");
  if (checkForm) {
    var checkButton = byId("check");
    var checkLabel = checkButton.textContent;
    checkForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (checkButton.getAttribute("aria-disabled")) { return; }
      checkButton.setAttribute("aria-disabled", "true");
      checkButton.textContent = checkTexts.busy;
      setText("check-feedback", checkTexts.busy);
      var started = Date.now();
      function done(message) {
        // Keep "Checking…" up for at least a second, or a quick answer looks like nothing happened.
        window.setTimeout(function () {
          checkButton.removeAttribute("aria-disabled");
          checkButton.textContent = checkLabel;
          setText("check-feedback", message);
        }, Math.max(0, 1000 - (Date.now() - started)));
      }
      ask(box.getAttribute("data-check-url"), {
        method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": token }
      }).then(function (status) {
        done(status && !status.final ? checkTexts.not_yet : "");
      }).catch(function () { done(checkTexts.offline); });
    });
  }
  if (box.getAttribute("data-phase") && !byId("steps-area").hidden) { timer = window.setInterval(poll, POLL_MS); }
}());
