// Kiosk mode, without inline script (the CSP forbids it):
// - on a student's page: after the idle time (PROOFUP_KIOSK_IDLE_SECONDS) with no touch, key or scroll, a visible
//   countdown with "I'm still here", then the "I'm done" form is sent (why=idle): sign-out everywhere;
// - when the set-up is done (the guide's live status says "done", or the status page says "completed"), a short
//   countdown, then the same sign-out (why=complete);
// - on the attract screen after a sign-out: the news is replaced by the plain screen after a while, so the next
//   student never reads the previous one's.
(function () {
  "use strict";
  var RESET_AFTER_MS = 20000;

  function byId(id) { return document.getElementById(id); }

  var attract = byId("kiosk-attract");
  if (attract && attract.getAttribute("data-reset-url")) {
    window.setTimeout(function () { window.location.replace(attract.getAttribute("data-reset-url")); },
                      RESET_AFTER_MS);
  }

  var panel = byId("kiosk-idle");
  var form = byId("kiosk-done-form");
  if (!panel || !form) { return; }
  var idleSeconds = parseInt(panel.getAttribute("data-idle-seconds"), 10) || 120;
  var warnSeconds = Math.min(30, Math.ceil(idleSeconds / 2));
  var completeSeconds = Math.min(15, idleSeconds);
  var text = byId("kiosk-idle-text");
  var stillHere = byId("kiosk-still-here");
  var lastActive = Date.now();
  var completeAt = null;
  var sent = false;

  function signOut(why) {
    if (sent) { return; }
    sent = true;
    byId("kiosk-why").value = why;
    form.submit();
  }

  function activity() {
    if (completeAt !== null) { return; }
    lastActive = Date.now();
    if (!panel.hidden) { panel.hidden = true; text.textContent = ""; }
  }

  function finished() {
    var status = byId("status");
    if (status && status.getAttribute("data-phase") === "done") { return true; }
    return document.querySelector('[data-state="completed"]') !== null;
  }

  function show(template, seconds) {
    var message = template.replace("{seconds}", String(seconds));
    if (text.textContent !== message) { text.textContent = message; }
    panel.hidden = false;
  }

  function tick() {
    if (completeAt === null && finished()) {
      completeAt = Date.now() + completeSeconds * 1000;
      stillHere.hidden = true;
    }
    if (completeAt !== null) {
      var left = Math.ceil((completeAt - Date.now()) / 1000);
      if (left <= 0) { signOut("complete"); return; }
      show(panel.getAttribute("data-complete-text"), left);
      return;
    }
    var remaining = idleSeconds - Math.floor((Date.now() - lastActive) / 1000);
    if (remaining <= 0) { signOut("idle"); return; }
    if (remaining <= warnSeconds) {
      var wasHidden = panel.hidden;
      show(panel.getAttribute("data-countdown-text"), remaining);
      if (wasHidden) { stillHere.focus(); }
    }
  }

  ["pointerdown", "keydown", "touchstart", "wheel", "scroll"].forEach(function (name) {
    window.addEventListener(name, activity, { passive: true });
  });
  stillHere.addEventListener("click", activity);
  // Back to a page the browser kept in memory (it should keep none): start counting afresh.
  window.addEventListener("pageshow", function (event) { if (event.persisted) { window.location.reload(); } });
  window.setInterval(tick, 1000);
}());
