// Modal dialogs: confirm an action, view a full-size photo.

import { h } from "../dom.js";
import { authImage, imageUrl } from "../images.js";

function modal(labelId, ...content) {
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": labelId }, ...content);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  return dialog;
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmDialog({ title, text, confirmLabel, danger = true }) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog", class: "dialog-actions" },
      h("button", { type: "submit", value: "cancel", class: "secondary", autofocus: true }, "Cancel"),
      h("button", { type: "submit", value: "confirm", class: danger ? "danger" : "" }, confirmLabel),
    );
    const dialog = modal("confirm-title", h("h2", { id: "confirm-title" }, title), h("p", {}, text), form);
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"));
    dialog.showModal();
  });
}

/** The full photo of a capture, fetched with the bearer token. */
export function photoDialog(capture, caption, extra) {
  const close = h("button", { type: "button", class: "secondary" }, "Close");
  const dialog = modal("photo-title",
    h("div", { class: "dialog-head" }, h("h2", { id: "photo-title" }, caption), close),
    h("div", { class: "photo-frame" },
      authImage(() => imageUrl(capture.capture_id), `Full photo: ${caption}`, { class: "full-photo", width: capture.width, height: capture.height })),
    extra || null,
  );
  dialog.classList.add("photo-dialog");
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.showModal();
  close.focus();
  return dialog;
}
