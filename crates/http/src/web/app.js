// Dragging a deal's card onto another stage's column submits the card's
// own "Move" form: the same request as without JavaScript.
(function () {
  "use strict";
  var status = document.getElementById("board-status");
  document.querySelectorAll("[data-deal-card]").forEach(function (card) {
    card.draggable = true;
    card.addEventListener("dragstart", function (event) {
      event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-card"));
      event.dataTransfer.effectAllowed = "move";
    });
  });
  document.querySelectorAll("[data-stage-column]").forEach(function (column) {
    column.addEventListener("dragover", function (event) {
      event.preventDefault();
      column.classList.add("drop-target");
    });
    column.addEventListener("dragleave", function () {
      column.classList.remove("drop-target");
    });
    column.addEventListener("drop", function (event) {
      event.preventDefault();
      column.classList.remove("drop-target");
      var id = event.dataTransfer.getData("text/plain");
      var form = document.querySelector('form[data-deal="' + id + '"]');
      if (!form) { return; }
      form.querySelector("select").value = column.getAttribute("data-stage-column");
      if (status) { status.textContent = "Moving the deal to " + column.getAttribute("data-stage-column") + "…"; }
      form.submit();
    });
  });
})();

// Search as you type: the list's own search form, asked again a moment
// after each keystroke; the page's results are swapped for the answer's
// and the address keeps the query, so back and reload show the same.
(function () {
  "use strict";
  var form = document.querySelector("form[data-live-search]");
  var results = document.getElementById("results");
  if (!form || !results) { return; }
  var input = form.querySelector("input[type=search]");
  var timer = null;
  var asked = 0;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var url = form.getAttribute("action") + "?" + new URLSearchParams(new FormData(form)).toString();
      var mine = ++asked;
      fetch(url, { credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          if (mine !== asked) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("results");
          if (fresh) {
            results.replaceWith(fresh);
            results = fresh;
            history.replaceState(null, "", url);
          }
        });
    }, 150);
  });
})();
