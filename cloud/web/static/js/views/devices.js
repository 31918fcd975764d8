// My mailboxes: one card each (state, battery, last seen, latest result) and the claim form.

import { endpoints } from "../api.js";
import { busy, h, latestOnly, message, replace } from "../dom.js";
import { battery, describeAnalysis, relativeTime } from "../format.js";
import { authImage, thumbnailUrl } from "../images.js";
import { pushCard } from "../push.js";
import { billingNotice } from "./billing.js";

const CARD_EVENTS = new Set([
  "capture_received", "telemetry_received", "analysis_completed", "analysis_failed", "mail_delivery",
  "calibration_needed", "low_battery", "device_offline",
]);

export function statusPill(status) {
  const online = status === "online";
  return h("span", { class: `pill ${online ? "pill-online" : "pill-offline"}` }, online ? "Online" : "Offline");
}

export function batteryInfo(volts) {
  const b = battery(volts);
  return h("span", { class: `battery${b.low ? " battery-low" : ""}` },
    h("span", { class: "label" }, "Battery "), b.text,
    b.low ? h("strong", { class: "battery-hint" }, b.critical ? " — battery critical, recharge now" : " — low battery, recharge soon") : null,
  );
}

function latestLine(status) {
  const capture = status && status.latest_capture;
  if (!capture) return h("p", { class: "result result-none" }, "No photos yet");
  const result = describeAnalysis(capture.analysis);
  return h("div", { class: "latest-mini" },
    authImage(() => thumbnailUrl(capture.capture_id), `Latest photo, ${relativeTime(capture.taken_at)}`, { class: "mini-thumb", width: 64, height: 48 }),
    h("p", { class: `result result-${result.state}` }, result.text),
  );
}

function deviceCard(device, status) {
  const href = `#/mailbox/${encodeURIComponent(device.serial)}`;
  return h("li", { class: "card device-card" },
    h("h2", {}, h("a", { href }, device.name)),
    h("p", { class: "meta" }, statusPill(device.status), " ", h("span", { class: "serial" }, device.serial)),
    h("ul", { class: "facts" },
      h("li", {}, batteryInfo(device.battery_voltage)),
      h("li", {}, h("span", { class: "label" }, "Last seen "), relativeTime(device.last_seen_at)),
      h("li", {}, h("span", { class: "label" }, "Firmware "), device.firmware_version || "unknown"),
    ),
    latestLine(status),
  );
}

function claimForm(onClaimed) {
  const feedback = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit" }, "Add mailbox");
  const form = h("form", { class: "claim-form", novalidate: true },
    h("div", { class: "field" },
      h("label", { for: "claim_code" }, "Claim code"),
      h("input", { id: "claim_code", name: "claim_code", required: true, autocomplete: "off", spellcheck: "false",
        minlength: 4, maxlength: 32, "aria-describedby": "claim-hint" }),
      h("p", { class: "hint", id: "claim-hint" }, "The code your installer gave you."),
    ),
    h("div", { class: "field" },
      h("label", { for: "claim_name" }, "Name (optional)"),
      h("input", { id: "claim_name", name: "claim_name", maxlength: 100, placeholder: "Front gate" }),
    ),
    feedback,
    submit,
  );
  // The installer's QR code opens /?claim=CODE: the code is filled in, the homeowner only confirms.
  const linked = new URLSearchParams(location.search).get("claim");
  if (linked) form.claim_code.value = linked;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(feedback);
    const code = form.claim_code.value.trim();
    if (code.length < 4) {
      replace(feedback, message("error", "Enter the claim code (at least 4 characters)."));
      return;
    }
    await busy(submit, async () => {
      try {
        const device = await endpoints.claim(code, form.claim_name.value.trim());
        form.reset();
        replace(feedback, message("success", `${device.name} is now yours.`));
        await onClaimed();
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });
  return h("section", { class: "card", "aria-labelledby": "claim-title" }, h("h2", { id: "claim-title" }, "Add a mailbox"), form);
}

export async function devicesView(app, page, scope) {
  const list = h("div", { class: "device-list", "aria-live": "polite", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading your mailboxes…"));
  const welcome = h("div", {});
  replace(page, h("h1", {}, "My mailboxes"), billingNotice(app), welcome, list, claimForm(() => load()));
  // Walk a user with no alert channel yet to one: push on this device (the others are under Notifications).
  pushCard({ compact: true }).then((card) => scope.alive && replace(welcome, card)).catch(() => null);
  let shown = null;

  const load = latestOnly(async (current) => {
    const devices = await endpoints.devices();
    const statuses = await Promise.allSettled(devices.map((d) => endpoints.status(d.serial)));
    if (!scope.alive || !current()) return;
    list.removeAttribute("aria-busy");
    // Re-draw only on a change, so a refresh does not take the keyboard focus away.
    const signature = JSON.stringify([devices, statuses.map((s) => s.value || null), devices.map((d) => relativeTime(d.last_seen_at))]);
    if (signature === shown) return;
    shown = signature;
    if (!devices.length) {
      replace(list, h("p", { class: "empty" }, "No mailboxes yet. Enter the claim code from your installer below."));
      return;
    }
    replace(list, h("ul", { class: "cards" }, devices.map((d, i) => deviceCard(d, statuses[i].value))));
  });

  // Pushed: a photo, a result, a mailbox state, battery or online status changes the cards.
  scope.onLive((event) => CARD_EVENTS.has(event.kind), () => load().catch((error) => {
    if (error.status !== 401) app.flash("error", error.message);
  }));
  await load();
}
