// Row editors of the policy form (decisions/admin_forms.py): add a row by cloning the last
// one, clear a row with its ✕. Every row's inputs share their names, so nothing is renumbered;
// the server drops blank rows. Without JavaScript the form still offers one blank row.
"use strict";
document.addEventListener("click", function (event) {
  const button = event.target.closest(".cs-add-row, .cs-remove-row");
  if (!button) return;
  event.preventDefault();
  if (button.classList.contains("cs-remove-row")) {
    button.closest("tr").querySelectorAll("input, textarea, select").forEach(function (input) {
      input.value = "";
    });
    return;
  }
  const body = button.closest(".cs-rows").querySelector("tbody");
  const row = body.lastElementChild.cloneNode(true);
  row.querySelectorAll("input, textarea, select").forEach(function (input) {
    input.value = "";
  });
  body.appendChild(row);
  row.querySelector("input, textarea, select").focus();
});
