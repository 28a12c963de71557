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

  // ------------------------------------------------------- per-colleague settings
  var userEl = document.getElementById("current-user");
  var userName = userEl ? userEl.textContent.trim() : "";
  function pref(name, value) {
    var key = "desk:" + userName + ":" + name;
    try {
      if (value === undefined) { return window.localStorage.getItem(key); }
      if (value === null) { window.localStorage.removeItem(key); } else { window.localStorage.setItem(key, value); }
    } catch (e) { /* storage blocked: the setting lasts for this page only */ }
    return value;
  }

  // Focus after a reload: the form's action carries a fragment (#reply-text), or the
  // ticket page stored the focused element's id before it reloaded itself.
  (function restoreFocus() {
    var id = "";
    try { id = window.sessionStorage.getItem("desk:focus") || ""; window.sessionStorage.removeItem("desk:focus"); } catch (e) { id = ""; }
    if (!id && window.location.hash.length > 1) { id = decodeURIComponent(window.location.hash.slice(1)); }
    var el = id ? document.getElementById(id) : null;
    if (el && id !== "inhoud" && typeof el.focus === "function") { el.focus(); }
  })();

  // ---------------------------------------------------------------- queue
  if (page === "queue") {
    var tbody = document.getElementById("queue-body");
    var queueTable = tbody ? tbody.closest("table") : null;
    var baseTitle = document.title;
    var known = {};
    var rounds = 0;

    function rowKey(tr) {
      var id = tr.getAttribute("data-ticket-id");
      if (id) { return id; }
      if (tr.getAttribute("data-section")) { return "section:" + tr.getAttribute("data-section"); }
      return tr.classList.contains("empty") ? "empty" : "";
    }
    if (tbody) {
      Array.prototype.forEach.call(tbody.children, function (tr) { known[rowKey(tr)] = true; });
    }

    // Controls: pause live updates (WCAG 2.2.2), notifications, sound.
    var controls = document.createElement("div");
    controls.className = "live-controls";
    controls.id = "live-controls";
    controls.innerHTML =
      '<button type="button" class="small" id="live-toggle" aria-pressed="false">Live bijwerken pauzeren</button>' +
      '<button type="button" class="small" id="notify-toggle" aria-pressed="false">Meldingen aan</button>' +
      '<label class="check small"><input type="checkbox" id="sound-toggle"> Geluid bij een nieuw gesprek</label>' +
      '<span class="live-state" id="live-state" role="status"></span>';
    if (queueTable) { queueTable.parentNode.insertBefore(controls, queueTable); }
    var liveToggle = document.getElementById("live-toggle");
    var notifyToggle = document.getElementById("notify-toggle");
    var soundToggle = document.getElementById("sound-toggle");
    var liveState = document.getElementById("live-state");
    var paused = pref("paused") === "1";
    var notifyOn = pref("notify") === "1";
    soundToggle.checked = pref("sound") === "1";

    function showState(text) { liveState.textContent = text; }
    function renderPause() {
      liveToggle.textContent = paused ? "Live bijwerken hervatten" : "Live bijwerken pauzeren";
      liveToggle.setAttribute("aria-pressed", paused ? "true" : "false");
      body.setAttribute("data-live", paused ? "paused" : "on");
    }
    function notificationsAllowed() {
      return "Notification" in window && window.Notification.permission === "granted";
    }
    function renderNotify() {
      var on = notifyOn && notificationsAllowed();
      notifyToggle.textContent = on ? "Meldingen uit" : "Meldingen aan";
      notifyToggle.setAttribute("aria-pressed", on ? "true" : "false");
    }
    renderPause();
    renderNotify();
    if (paused) { showState("Live bijwerken staat op pauze."); }

    liveToggle.addEventListener("click", function () {
      paused = !paused;
      pref("paused", paused ? "1" : null);
      renderPause();
      showState(paused ? "Live bijwerken staat op pauze." : "Live bijwerken staat weer aan.");
    });
    notifyToggle.addEventListener("click", function () {
      if (notifyOn && notificationsAllowed()) {
        notifyOn = false;
        pref("notify", null);
        renderNotify();
        showState("Meldingen staan uit.");
        return;
      }
      if (!("Notification" in window)) { showState("Deze browser kan geen meldingen tonen."); return; }
      // Permission is asked only now, after the colleague asked for notifications.
      Promise.resolve(window.Notification.requestPermission()).then(function (permission) {
        notifyOn = permission === "granted";
        pref("notify", notifyOn ? "1" : null);
        renderNotify();
        showState(notifyOn ? "Meldingen staan aan: je krijgt een melding bij een nieuw gesprek."
                           : "De browser staat geen meldingen toe. Je kunt dit in de browserinstellingen wijzigen.");
      });
    });
    soundToggle.addEventListener("change", function () {
      pref("sound", soundToggle.checked ? "1" : null);
      if (soundToggle.checked) { beep(); }
    });

    var audio = null;
    function beep() {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      try {
        audio = audio || new Ctx();
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.value = 0.15;
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start();
        osc.stop(audio.currentTime + 0.25);
        body.setAttribute("data-last-sound", String(Date.now()));
      } catch (e) { /* no audio device */ }
    }

    function announce(newRows) {
      if (!newRows.length) { return; }
      if (soundToggle.checked) { beep(); }
      if (notifyOn && notificationsAllowed()) {
        newRows.forEach(function (tr) {
          var id = tr.getAttribute("data-ticket-id");
          var reasonCell = tr.querySelector("td.reason");
          var reason = reasonCell ? reasonCell.textContent.trim().split("\n")[0] : "";
          try {
            var note = new window.Notification("Nieuw gesprek #" + id + " in de wachtrij", {
              body: reason, tag: "desk-ticket-" + id
            });
            note.onclick = function () { window.focus(); window.location.href = "/tickets/" + id; };
            body.setAttribute("data-last-notified", id);
          } catch (e) { /* the browser refused (e.g. no notification service) */ }
        });
      }
    }

    // Update rows in place by data-ticket-id: a focused element is never replaced,
    // so keyboard focus and the scroll position stay where they are.
    function updateRows(html) {
      var tpl = document.createElement("template");
      tpl.innerHTML = html;  // rendered and escaped by the server
      var fresh = Array.prototype.filter.call(tpl.content.childNodes, function (n) { return n.nodeType === 1; });
      var active = document.activeElement;
      var current = {};
      Array.prototype.forEach.call(tbody.children, function (tr) { current[rowKey(tr)] = tr; });
      var wanted = {};
      var arrived = [];
      fresh.forEach(function (tr, index) {
        var key = rowKey(tr);
        wanted[key] = true;
        var existing = current[key];
        if (!existing) {
          existing = document.importNode(tr, true);
          if (tr.getAttribute("data-ticket-id") && !known[key] && tr.classList.contains("status-open")) { arrived.push(tr); }
        } else if (existing.outerHTML !== tr.outerHTML) {
          patchRow(existing, tr, active);
        }
        if (key) { known[key] = true; }
        var at = tbody.children[index];
        if (at !== existing) {
          var hadFocus = active && existing.contains(active);
          tbody.insertBefore(existing, at || null);
          if (hadFocus && document.activeElement !== active) { active.focus({ preventScroll: true }); }
        }
      });
      Array.prototype.forEach.call(Array.prototype.slice.call(tbody.children), function (tr) {
        if (!wanted[rowKey(tr)]) {
          if (active && tr.contains(active)) {
            // The focused ticket left the queue: keep focus on the list, not the top of the page.
            var next = tr.nextElementSibling || tr.previousElementSibling;
            var link = next && next.querySelector("a, button");
            tbody.removeChild(tr);
            if (link) { link.focus({ preventScroll: true }); }
          } else {
            tbody.removeChild(tr);
          }
        }
      });
      announce(arrived);
    }

    function patchRow(oldRow, newRow, active) {
      Array.prototype.forEach.call(newRow.attributes, function (a) {
        if (oldRow.getAttribute(a.name) !== a.value) { oldRow.setAttribute(a.name, a.value); }
      });
      var oldCells = oldRow.children;
      var newCells = newRow.children;
      if (oldCells.length !== newCells.length) {
        if (active && oldRow.contains(active)) { return; }  // next round, once focus has moved on
        oldRow.innerHTML = newRow.innerHTML;
        return;
      }
      for (var i = 0; i < newCells.length; i++) {
        if (oldCells[i].innerHTML === newCells[i].innerHTML) { continue; }
        if (active && oldCells[i].contains(active)) { continue; }  // never replace the focused element
        oldCells[i].innerHTML = newCells[i].innerHTML;
      }
    }

    every(function () {
      if (paused) { return Promise.resolve(); }
      // The same filters, sort and page as the page itself (data-query, set by the server).
      var query = tbody ? (tbody.getAttribute("data-query") || "") : "";
      return fetchJson("/api/queue?fragment=1" + (query ? "&" + query : "")).then(function (data) {
        setText("count-open", data.counts.open);
        setText("count-claimed", data.counts.claimed);
        setText("count-overdue", data.counts.overdue);
        document.title = (data.counts.open ? "(" + data.counts.open + ") " : "") + baseTitle;
        // The waiting times change every minute, so compare the rows on every round.
        if (tbody) {
          updateRows(data.html);
          tbody.setAttribute("data-version", data.version);
        }
        rounds += 1;
        body.setAttribute("data-live-rounds", String(rounds));
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
            var focused = document.activeElement;
            if (focused && focused.id) {
              try { window.sessionStorage.setItem("desk:focus", focused.id); } catch (e) { /* ignore */ }
            }
            window.location.reload();
          } else {
            document.getElementById("state-changed").hidden = false;
          }
        }
      });
    });
  }
})();
