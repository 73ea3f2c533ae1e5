// The dashboard's only script: lists refresh in place, ids copy with one click.
// Elements with data-refresh="URL" data-every="SECONDS" get their content from URL (which
// answers the same list, rendered alone) every SECONDS; not while the tab is hidden, and not
// while the pointer is over them or a <details> inside is open (so nothing moves under a hand);
// data-under-pointer refreshes all the same (a progress bar: nothing to click moves). Once
// what they show has ended (an element marked data-final), they stop.
(function () {
  "use strict";

  function refresh(element) {
    var underHand = !("underPointer" in element.dataset) && element.matches(":hover");
    if (document.hidden || underHand || element.querySelector("details[open]")) {
      return;
    }
    fetch(element.dataset.refresh, { credentials: "same-origin", headers: { "X-Partial": "1" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { return null; }  // logged out: leave it
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          element.innerHTML = html;  // rendered by the server, outside text escaped there
          element.dataset.refreshedAt = new Date().toISOString();
          if (element.querySelector("[data-final]")) {  // it has ended: nothing more to fetch
            clearInterval(element.refreshTimer);
          }
        }
      })
      .catch(function () { /* the next round tries again */ });
  }

  function start() {
    document.querySelectorAll("[data-refresh]").forEach(function (element) {
      var seconds = Math.max(parseInt(element.dataset.every || "10", 10), 1);
      element.refreshTimer = setInterval(function () { refresh(element); }, seconds * 1000);
    });
    document.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-copy]");
      if (!button) { return; }
      var text = button.dataset.copy;
      var done = function () {
        button.textContent = "copied";
        setTimeout(function () { button.textContent = "copy"; }, 1200);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {  // plain http: select the id so Ctrl+C copies it
        var code = button.previousElementSibling;
        var range = document.createRange();
        range.selectNodeContents(code);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        done();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
