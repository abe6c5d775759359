// Shows the fields that apply to the choices made (Basic secret only with Basic, domains only
// with selected domains, ...). Without this script every field is shown and the form still works.
"use strict";

function applies(form, rule) {
  const [name, values] = rule.split("=");
  const checked = form.querySelector(`input[name="${name}"]:checked`);
  return checked !== null && values.split(",").includes(checked.value);
}

function update(form) {
  for (const el of form.querySelectorAll("[data-when]")) {
    const shown = applies(form, el.dataset.when);
    el.hidden = !shown;
    for (const input of el.querySelectorAll("input, select, textarea")) {
      // hidden fields keep their values (they are saved as typed) but leave the tab order
      input.tabIndex = shown ? 0 : -1;
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form")) {
    if (!form.querySelector("[data-when]")) continue;
    form.addEventListener("change", () => update(form));
    update(form);
  }
  const firstError = document.querySelector("[aria-invalid=true]");
  if (firstError) firstError.focus();
});
