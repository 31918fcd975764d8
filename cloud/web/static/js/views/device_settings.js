// A mailbox's remote settings: what the owner asks for, what the mailbox has in effect, and why it
// refused a version. The mailbox takes a change on its next wake and applies it from the wake after.

import { endpoints } from "../api.js";
import { busy, h, latestOnly, message, replace } from "../dom.js";

const FRAMESIZES = ["QQVGA", "QVGA", "CIF", "VGA", "SVGA", "XGA", "HD", "SXGA", "UXGA"];

// [path, label, input attributes]; an empty field leaves the mailbox's own setting.
const FIELDS = [
  ["wake_interval_s", "Wake every (seconds)", { type: "number", min: 10, max: 604800, step: 1 }],
  ["camera.quality", "JPEG quality (2 best – 63 smallest)", { type: "number", min: 2, max: 63, step: 1 }],
  ["low_battery.mv", "Low battery below (mV)", { type: "number", min: 0, max: 10000, step: 1 }],
  ["chunk_size", "Upload chunk (bytes)", { type: "number", min: 256, max: 65536, step: 1 }],
];

const fieldId = (path) => `setting_${path.replace(".", "_")}`;

export function describeSettings(s) {
  if (s.version === null) return message("info", "The mailbox uses the settings it was installed with.");
  if (s.error) return message("error", `The mailbox refused a change: ${s.error}`);
  if (s.applied) return message("success", `In effect on the mailbox (version ${s.version}).`);
  const now = s.applied_version === null ? "" : ` Version ${s.applied_version} is in effect until then.`;
  return message("info", `Version ${s.version} waits for the mailbox's next wake.${now}`);
}

export function settingsCard(serial) {
  const status = h("div", { "aria-live": "polite" });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit" }, "Save settings");
  const inputs = Object.fromEntries(FIELDS.map(([path, , attrs]) => [path, h("input", { id: fieldId(path), ...attrs })]));
  const framesize = h("select", { id: fieldId("camera.framesize") },
    h("option", { value: "" }, "As installed"), FRAMESIZES.map((f) => h("option", { value: f }, f)));
  const flash = h("select", { id: fieldId("camera.flash") },
    h("option", { value: "" }, "As installed"), h("option", { value: "on" }, "On"), h("option", { value: "off" }, "Off"));
  const form = h("form", { novalidate: true },
    FIELDS.map(([path, label]) => h("div", { class: "field" }, h("label", { for: fieldId(path) }, label), inputs[path])),
    h("div", { class: "field" }, h("label", { for: fieldId("camera.framesize") }, "Photo size"), framesize),
    h("div", { class: "field" }, h("label", { for: fieldId("camera.flash") }, "Flash"), flash),
    feedback, submit);

  function fill(desired) {
    for (const [path] of FIELDS) inputs[path].value = desired[path] ?? "";
    framesize.value = desired["camera.framesize"] ?? "";
    flash.value = desired["camera.flash"] === undefined ? "" : desired["camera.flash"] ? "on" : "off";
  }

  function values() {
    const out = {};
    for (const [path] of FIELDS) {
      const text = inputs[path].value.trim();
      if (text !== "") out[path] = Number(text);
    }
    if (framesize.value) out["camera.framesize"] = framesize.value;
    if (flash.value) out["camera.flash"] = flash.value === "on";
    return out;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(feedback);
    await busy(submit, async () => {
      try {
        const saved = await endpoints.saveDeviceSettings(serial, values());
        replace(status, describeSettings(saved));
        replace(feedback, message("success", "Saved — the mailbox takes it on its next wake."));
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });

  let filled = false;
  const card = h("section", { class: "card", "aria-labelledby": "settings-title" },
    h("h2", { id: "settings-title" }, "Settings"), status, form);
  // Called on each refresh: the status follows the mailbox; the form is filled once (never over an edit).
  card.load = latestOnly(async (current) => {
    const s = await endpoints.deviceSettings(serial);
    if (!current()) return;
    replace(status, describeSettings(s));
    if (!filled) {
      fill(s.desired);
      filled = true;
    }
  });
  return card;
}
