// duetime dashboard (ADR 0029): the only script, served from /ui/static. It refreshes every
// element with data-live="<url>" from that URL's server-rendered fragment every data-interval
// seconds. Pages work without it; they just do not update by themselves.
"use strict";

(function () {
  function refresh(element) {
    var url = element.getAttribute("data-live");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        // The gateway sends a browser whose session ended to the login page.
        if (response.redirected || response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          element.innerHTML = html;  // markup the server rendered and escaped
          element.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function start() {
    document.querySelectorAll("[data-live]").forEach(function (element) {
      var seconds = Math.max(1, parseInt(element.getAttribute("data-interval") || "5", 10));
      window.setInterval(function () {
        if (!document.hidden) { refresh(element); }
      }, seconds * 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
