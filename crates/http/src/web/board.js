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
