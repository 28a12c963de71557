/* KCC-desk live updates: polls the JSON API every few seconds (no page reload). */
(function () {
  "use strict";

  var body = document.body;
  var pollMs = parseInt(body.getAttribute("data-poll-ms") || "2500", 10) || 2500;
  var page = body.getAttribute("data-page");

  function fetchJson(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json", "X-Desk-Poll": "1" }
    }).then(function (response) {
      if (response.status === 401) {
        window.location.href = "/login?msg=expired&next=" + encodeURIComponent(window.location.pathname);
        throw new Error("session expired");
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    });
  }

  function every(fn) {
    function tick() {
      fn().catch(function () { /* network hiccup: try again next round */ })
          .then(function () { window.setTimeout(tick, pollMs); });
    }
    window.setTimeout(tick, pollMs);
  }

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = String(value); }
  }

  // ---------------------------------------------------------------- queue
  if (page === "queue") {
    var tbody = document.getElementById("queue-body");
    var baseTitle = document.title;
    every(function () {
      return fetchJson("/api/queue?fragment=1").then(function (data) {
        setText("count-open", data.counts.open);
        setText("count-claimed", data.counts.claimed);
        setText("count-overdue", data.counts.overdue);
        document.title = (data.counts.open ? "(" + data.counts.open + ") " : "") + baseTitle;
        // The waiting times change every minute, so re-render on every round.
        if (tbody) {
          tbody.innerHTML = data.html;  // rendered and escaped by the server
          tbody.setAttribute("data-version", data.version);
        }
      });
    });
  }

  // ---------------------------------------------------------------- ticket
  if (page === "ticket") {
    var ticketEl = document.getElementById("ticket");
    var ticketId = ticketEl.getAttribute("data-ticket-id");
    var initialState = ticketEl.getAttribute("data-state");
    var messages = document.getElementById("messages");
    var statusBox = document.getElementById("ticket-status");
    var replyText = document.getElementById("reply-text");
    var noteText = document.getElementById("note-text");

    var picker = document.getElementById("standard-answer");
    if (picker && replyText) {
      picker.addEventListener("change", function () {
        var option = picker.options[picker.selectedIndex];
        var text = option ? option.getAttribute("data-text") : "";
        if (text) {
          replyText.value = replyText.value ? replyText.value + "\n\n" + text : text;
          replyText.focus();
        }
        picker.selectedIndex = 0;
      });
    }

    every(function () {
      return fetchJson("/api/tickets/" + encodeURIComponent(ticketId) + "?fragment=1").then(function (data) {
        if (String(data.version) !== ticketEl.getAttribute("data-version")) {
          var atBottom = (window.innerHeight + window.scrollY) >= (document.body.offsetHeight - 40);
          messages.innerHTML = data.html.messages;  // rendered and escaped by the server
          ticketEl.setAttribute("data-version", String(data.version));
          if (atBottom) { window.scrollTo(0, document.body.scrollHeight); }
        }
        statusBox.innerHTML = data.html.status;
        var state = data.status + "|" + (data.claimed_by || "");
        if (state !== initialState) {
          var typing = (replyText && replyText.value.trim()) || (noteText && noteText.value.trim());
          if (!typing) {
            window.location.reload();
          } else {
            document.getElementById("state-changed").hidden = false;
          }
        }
      });
    });
  }
})();
