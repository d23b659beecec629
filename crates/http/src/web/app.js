// The pipeline board. Every move is the card's own "Move" form, the same
// request as without JavaScript; here it is sent in the background and
// the board the server answers with replaces this one, so the totals are
// the server's, and a polite live region says what happened. Dragging a
// card onto a column, or Alt with an arrow key on a focused card, picks
// the stage.
(function () {
  "use strict";
  var board = document.querySelector("[data-board]");
  var status = document.getElementById("board-status");
  if (!board) { return; }

  function say(text) { if (status) { status.textContent = text; } }

  function figuresOf(root, stage) {
    var column = Array.prototype.find.call(root.querySelectorAll("[data-stage-column]"), function (c) {
      return c.getAttribute("data-stage-column") === stage;
    });
    var figures = column && column.querySelector("[data-figures]");
    return figures ? figures.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function move(form, stage) {
    var card = form.closest("[data-deal-card]");
    var title = card ? card.getAttribute("data-title") : "The deal";
    var id = card ? card.getAttribute("data-deal-card") : null;
    form.querySelector("select").value = stage;
    say("Moving " + title + " to " + stage + "…");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form))
    }).then(function (response) {
      if (!response.ok || !response.redirected) { throw new Error(String(response.status)); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-board]");
      if (!fresh) { throw new Error("no board"); }
      board.replaceWith(fresh);
      board = fresh;
      bind(board);
      say("Moved " + title + " to " + stage + ". " + stage + ": " + figuresOf(board, stage) + ".");
      var again = id && board.querySelector('[data-deal-card="' + id + '"] a');
      if (again) { again.focus(); }
    }).catch(function () {
      // Let the browser send the form itself: the server's page explains.
      form.submit();
    });
  }

  function bind(root) {
    root.querySelectorAll("form.move").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        move(form, form.querySelector("select").value);
      });
    });
    root.querySelectorAll("[data-deal-card]").forEach(function (card) {
      card.draggable = true;
      card.addEventListener("dragstart", function (event) {
        event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-card"));
        event.dataTransfer.effectAllowed = "move";
      });
      card.addEventListener("keydown", function (event) {
        if (!event.altKey || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) { return; }
        var form = card.querySelector("form.move");
        if (!form) { return; }
        var select = form.querySelector("select");
        var next = select.selectedIndex + (event.key === "ArrowRight" ? 1 : -1);
        if (next < 0 || next >= select.options.length) { return; }
        event.preventDefault();
        move(form, select.options[next].value);
      });
    });
    root.querySelectorAll("[data-stage-column]").forEach(function (column) {
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
        var form = root.querySelector('form[data-deal="' + id + '"]');
        var stage = column.getAttribute("data-stage-column");
        if (form && form.querySelector("select").value !== stage) { move(form, stage); }
      });
    });
  }

  bind(board);
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
