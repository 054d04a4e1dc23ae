// Live strip: active downtimes and pending held counts, pushed by the server (server-sent
// events on /live) so they appear without a reload. Plain DOM, no framework.
(function () {
  "use strict";
  var strip = document.getElementById("live");
  if (!strip || !window.EventSource) { return; }
  var downtimes = document.getElementById("live-downtimes");
  var held = document.getElementById("live-held");
  function text(el, value) { el.textContent = value; }
  function render(snapshot) {
    var d = snapshot.downtimes;
    if (d.length === 0) {
      text(downtimes, "No machine is down.");
    } else {
      text(downtimes, "Down now: " + d.map(function (x) {
        return x.machine + " since " + x.since + (x.reason ? " (" + x.reason + ")" : " (no reason)");
      }).join("; ") + ".");
    }
    text(held, snapshot.held === 0 ? "No held counts." :
      snapshot.held + " held count(s) waiting (" + snapshot.held_parts + " parts).");
    strip.dataset.version = snapshot.version;
    var event = new CustomEvent("mesgw:live", { detail: snapshot });
    document.dispatchEvent(event);
  }
  var source = new EventSource(strip.dataset.src);
  source.addEventListener("snapshot", function (e) { render(JSON.parse(e.data)); });
})();
