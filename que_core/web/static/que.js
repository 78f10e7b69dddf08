// que web: the live parts and the confirmations. No framework, no CDN.
// An element with data-refresh="URL" is replaced every data-interval seconds
// by the HTML that URL returns (a fragment the server renders, escaped there).
(function () {
  "use strict";

  function refresh(el) {
    var seconds = parseFloat(el.getAttribute("data-interval")) || 3;
    function tick() {
      if (document.hidden) { return schedule(); }
      fetch(el.getAttribute("data-refresh"), {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          el.innerHTML = html;
          el.removeAttribute("data-stale");
          el.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { el.setAttribute("data-stale", "true"); })
        .then(schedule);
    }
    function schedule() { window.setTimeout(tick, seconds * 1000); }
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(refresh);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();
