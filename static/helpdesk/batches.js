// A batch's page: poll its status (JSON, worded by the server) and update the progress bar, the counts and
// each student's progress without reloading; reload once when the batch moves on (checked, sent, closed).
(function () {
  "use strict";
  var live = document.getElementById("batch-live");
  if (!live) { return; }
  var url = live.getAttribute("data-status-url");
  var state = live.getAttribute("data-state");
  var seconds = parseInt(live.getAttribute("data-poll-seconds"), 10);
  if (!(seconds > 0)) { return; }  // a closed batch changes no more
  var every = seconds * 1000;
  var leaving = false;  // a form is being sent: a reload now would race its answer (and eat its notice)
  document.addEventListener("submit", function () { leaving = true; });

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) { node.textContent = value; }
  }

  function counts(body) {
    var list = document.getElementById("counts");
    if (!list) { return; }
    while (list.firstChild) { list.removeChild(list.firstChild); }
    Object.keys(body.counts).sort().forEach(function (code) {
      var item = document.createElement("li");
      var strong = document.createElement("strong");
      item.setAttribute("data-count", code);
      item.appendChild(document.createTextNode((body.count_labels[code] || code) + ": "));
      strong.textContent = String(body.counts[code]);
      item.appendChild(strong);
      list.appendChild(item);
    });
  }

  function students(body) {
    body.students.forEach(function (student) {
      var row = document.getElementById("row-" + student.row);
      if (!row) { return; }
      row.setAttribute("data-progress", student.progress);
      var cell = row.querySelector('[data-field="progress"]');
      if (cell) { cell.textContent = student.progress_label; }
      var reminders = row.querySelector('[data-field="reminders"]');
      if (reminders) {
        reminders.textContent = String(student.reminders) + (student.last_reminder ? " (" + student.last_reminder + ")" : "");
      }
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body || leaving) { return; }
        if (body.state !== state) { window.location.reload(); return; }
        var bar = document.getElementById("check-progress");
        if (bar) { bar.value = body.percent; bar.textContent = body.percent + " %"; }
        text("batch-state", body.state_label);
        text("check-words", body.percent_label);
        counts(body);
        students(body);
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () {
        if (state !== "closed" && !leaving) { window.setTimeout(poll, every); }
      });
  }

  window.setTimeout(poll, every);
}());
