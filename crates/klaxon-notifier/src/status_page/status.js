// Klaxon status pages: live updates over Server-Sent Events.
// The server renders (and escapes) every fragment; this script only places
// them, keeps relative times fresh and says whether the page is live.
(function () {
  "use strict";
  var list = document.getElementById("incidents");
  if (!list) {
    var token = document.getElementById("token");
    if (token) token.focus();
    return;
  }
  var live = document.getElementById("live");
  var empty = document.getElementById("empty");
  var summary = document.getElementById("summary");

  function relative(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    var span = Math.abs(seconds);
    var amount;
    if (span < 60) return "just now";
    if (span < 3600) amount = Math.floor(span / 60) + " min";
    else if (span < 86400) amount = Math.floor(span / 3600) + " h " + Math.floor((span % 3600) / 60) + " min";
    else amount = Math.floor(span / 86400) + " d " + Math.floor((span % 86400) / 3600) + " h";
    return seconds < 0 ? amount + " ago" : "in " + amount;
  }

  function refreshTimes() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      times[i].textContent = relative(new Date(times[i].getAttribute("datetime")));
    }
  }

  function refresh() {
    var articles = list.querySelectorAll("article");
    empty.hidden = articles.length > 0;
    if (summary) {
      var counts = {};
      for (var i = 0; i < articles.length; i++) {
        var badge = articles[i].querySelector(".badge");
        var name = badge ? badge.textContent : "?";
        counts[name] = (counts[name] || 0) + 1;
      }
      var parts = Object.keys(counts).sort().map(function (k) { return counts[k] + " " + k; });
      summary.textContent = articles.length ? articles.length + " open: " + parts.join(", ") : "";
    }
    refreshTimes();
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content.firstElementChild;
  }

  function place(element) {
    var order = element.getAttribute("data-order");
    var others = list.querySelectorAll("article");
    for (var i = 0; i < others.length; i++) {
      if (others[i].getAttribute("data-order") > order) {
        list.insertBefore(element, others[i]);
        return;
      }
    }
    list.appendChild(element);
  }

  function state(text, name) {
    live.textContent = text;
    live.className = "live " + name;
  }

  var source = new EventSource(list.getAttribute("data-events"));
  source.addEventListener("open", function () { state("Live", "on"); });
  source.addEventListener("snapshot", function (e) {
    list.innerHTML = JSON.parse(e.data).html;
    refresh();
  });
  source.addEventListener("incident", function (e) {
    var data = JSON.parse(e.data);
    var old = document.getElementById(data.id);
    if (old) old.remove();
    if (data.html) {
      var element = fragment(data.html);
      element.classList.add("changed");
      place(element);
    }
    refresh();
  });
  source.addEventListener("signed-out", function () {
    source.close();
    window.location.reload();
  });
  source.addEventListener("error", function () {
    if (source.readyState !== EventSource.CLOSED) {
      state("Reconnecting…", "off");
      return;
    }
    if (!document.body.classList.contains("executive")) {
      state("Not live: reload the page", "off");
      return;
    }
    // Refused: an ended session shows the sign-in form; anything else says so.
    fetch("/status/session", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) window.location.reload();
      else state("Not live: too many open status pages; close one and reload", "off");
    });
  });
  setInterval(refreshTimes, 30000);
  refresh();
})();
