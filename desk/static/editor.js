/* Content editors: live progress of a publish job, "select all" for examples. */
(function () {
  "use strict";

  var body = document.body;
  var page = body.getAttribute("data-page");
  var pollMs = Math.min(parseInt(body.getAttribute("data-poll-ms") || "2500", 10) || 2500, 1500);

  if (page === "editor-intent") {
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        var boxes = document.querySelectorAll("#examples-table input.pick");
        for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
      });
    }
  }

  if (page === "editor-publish") {
    var target = document.getElementById("job-status");
    var tick = function () {
      var card = document.getElementById("job-card");
      var running = card && (card.getAttribute("data-running") === "1" || card.getAttribute("data-job-status") === "running");
      if (!running) { return; }
      fetch("/api/editor/publish?fragment=1", {
        credentials: "same-origin", cache: "no-store",
        headers: { "Accept": "application/json", "X-Desk-Poll": "1" }
      }).then(function (response) {
        if (response.status === 401) {
          window.location.href = "/login?msg=expired&next=/editor/publish";
          throw new Error("session expired");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (data) {
        if (target && data.html) { target.innerHTML = data.html; }  // rendered and escaped by the server
      }).catch(function () { /* try again next round */ })
        .then(function () { window.setTimeout(tick, pollMs); });
    };
    window.setTimeout(tick, pollMs);
  }
})();
