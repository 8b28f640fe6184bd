// Keygate's pages' only script (CSP script-src 'self'; nothing inline):
// the copy button beside a new key's secret, and following the
// "continue" link a cross-site arrival needs to carry its cookie.
"use strict";
document.addEventListener("click", function (ev) {
  var btn = ev.target.closest("[data-copy]");
  if (!btn) return;
  var input = document.getElementById(btn.getAttribute("data-copy"));
  if (!input) return;
  var done = function () {
    var note = document.querySelector("[data-copied]");
    if (note) note.hidden = false;
    btn.textContent = "Copied";
  };
  input.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});
document.addEventListener("DOMContentLoaded", function () {
  var next = document.querySelector("a[data-autofollow]");
  if (next) next.click();
});
