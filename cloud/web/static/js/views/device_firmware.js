// A mailbox's firmware: the version it runs and where its newest update stands (pending, downloading n%,
// checked and waiting for a reboot, installed, or rolled back / refused and why). Updates are rolled out
// by the operator (POST /api/firmware/rollouts); this card only shows them.

import { endpoints } from "../api.js";
import { h, latestOnly, message, replace } from "../dom.js";

export function describeUpdate(u) {
  if (!u) return message("info", "No update for this mailbox.");
  const v = `Version ${u.version}`;
  switch (u.state) {
    case "waiting": return message("info", `${v} waits for the first mailboxes of its rollout.`);
    case "pending": return message("info", `${v} is offered; the mailbox starts downloading on a wake with enough battery.`);
    case "downloading": return message("info", `${v}: downloading, ${u.progress}% (a little on each wake).`);
    case "staged": return message("info", `${v} is downloaded and checked; it runs from the mailbox's next wake.`);
    case "installed": return message("success", `${v} is installed.`);
    case "rolled_back": return message("error", `${v} was rolled back by the mailbox: ${u.reason || "no reason given"}.`);
    case "refused": return message("error", `${v} was refused by the mailbox: ${u.reason || "no reason given"}.`);
    default: return message("info", `${v}: ${u.state}.`);
  }
}

export function firmwareCard(serial) {
  const running = h("p", {});
  const status = h("div", { "aria-live": "polite" });
  const card = h("section", { class: "card", "aria-labelledby": "firmware-title" },
    h("h2", { id: "firmware-title" }, "Firmware"), running, status);
  // Called on each refresh of the mailbox page.
  card.load = latestOnly(async (current) => {
    const f = await endpoints.deviceFirmware(serial);
    if (!current()) return;
    replace(running, h("span", { class: "label" }, "Running "), f.running || "unknown");
    replace(status, describeUpdate(f.update));
  });
  return card;
}
