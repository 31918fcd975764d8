// The owner's choice, per mailbox: may the installer who set it up still look at it (read-only)?
// Off unless the owner turns it on; turning it off ends the installer's access at once.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";

export function installerAccessCard(serial) {
  const toggle = h("input", { type: "checkbox", id: "installer-access" });
  const feedback = h("div", { "aria-live": "polite" });
  const card = h("section", { class: "card", "aria-labelledby": "installer-access-title", hidden: true },
    h("h2", { id: "installer-access-title" }, "Installer"),
    h("label", { class: "check" }, toggle,
      "Let the installer who set up this mailbox see it (photos and settings, read-only)"),
    feedback,
  );

  // Once the owner has set it here, this card's own confirmed answer wins over device copies that a
  // live update fetched before that change committed (one such stale copy silently undid the toggle).
  let setHere = false;
  toggle.addEventListener("change", async () => {
    replace(feedback);
    const wanted = toggle.checked;
    setHere = true;
    await busy(toggle, async () => {
      try {
        await endpoints.setInstallerAccess(serial, wanted);
        replace(feedback, message("success", wanted ? "The installer can see this mailbox." : "The installer can no longer see this mailbox."));
      } catch (error) {
        toggle.checked = !wanted;
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });

  /** Called with each fresh copy of the device: only its owner sees (and sets) this. */
  card.show = (device) => {
    card.hidden = device.access !== "owner";
    if (!toggle.disabled && !setHere) toggle.checked = device.installer_access;
  };
  return card;
}
