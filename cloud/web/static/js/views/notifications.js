// Notification preferences: which events reach me on which channel, quiet hours, and what was sent.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { dateTime } from "../format.js";
import { appsCard } from "../apps.js";
import { pushCard } from "../push.js";

const KIND_LABELS = {
  mail_arrived: "Mail arrived",
  package_arrived: "Package arrived",
  package_damaged: "Package may be damaged",
  more_mail: "More mail added",
  mailbox_empty: "Mail collected",
  calibration_needed: "Mailbox needs calibrating",
  retake_needed: "Photo needs a retake",
  analysis_failed: "Analysis failed",
  low_battery: "Low battery",
  device_offline: "Mailbox offline",
  trigger_fulfilled: "Requested photo arrived",
  trigger_expired: "Photo request expired",
  ai_budget_reached: "AI budget reached",
  daily_digest: "Daily summary",
};
const CHANNEL_LABELS = { push: "App", webpush: "Browser push", apprise: "Other apps", email: "Email", sms: "SMS",
  webhook: "Webhook", console: "Server log" };

const label = (table, key) => table[key] || key.replace(/_/g, " ");
// The server's console channel is an operator's tool, not something a homeowner picks.
const shownChannels = (prefs) => prefs.available_channels.filter((c) => c !== "console");

function eventsTable(prefs) {
  const channels = shownChannels(prefs);
  if (!channels.length) return h("p", { class: "empty" }, "No notification channels are set up on this server yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "prefs" },
    h("caption", { class: "sr-only" }, "Which events notify me on which channel"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Event"),
      channels.map((c) => h("th", { scope: "col" }, label(CHANNEL_LABELS, c))))),
    h("tbody", {}, prefs.kinds.map((kind) => h("tr", {},
      h("th", { scope: "row" }, label(KIND_LABELS, kind)),
      channels.map((channel) => h("td", {}, h("input", {
        type: "checkbox", name: `${kind}:${channel}`, checked: (prefs.events[kind] || []).includes(channel),
        "aria-label": `${label(KIND_LABELS, kind)} by ${label(CHANNEL_LABELS, channel)}`,
      }))),
    ))),
  ));
}

function field(id, text, input, hint) {
  input.id = id;
  input.name = id;
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", { class: "field" }, h("label", { for: id }, text), input, hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

// An address gets nothing until its owner types back the code sent there (the server enforces it).
function confirmBlock(prefs, channel, onSaved) {
  const address = channel === "email" ? prefs.email : prefs.phone;
  const confirmed = channel === "email" ? prefs.email_confirmed : prefs.phone_confirmed;
  if (!address || confirmed || !prefs.available_channels.includes(channel)) return null;
  const what = channel === "email" ? "email address" : "phone number";
  const feedback = h("div", {});
  const code = h("input", { type: "text", inputmode: "numeric", autocomplete: "one-time-code", maxlength: 6,
    pattern: "[0-9]{6}", "aria-label": `Code sent to ${address}` });
  const send = h("button", { type: "button", class: "secondary" }, "Send code");
  const confirm = h("button", { type: "button" }, "Confirm");
  send.addEventListener("click", () => busy(send, async () => {
    try {
      await endpoints.sendConfirmationCode(channel);
      replace(feedback, message("success", `Code sent to ${address}.`));
    } catch (error) {
      if (error.status !== 401) replace(feedback, message("error", error.message));
    }
  }));
  confirm.addEventListener("click", () => busy(confirm, async () => {
    try {
      await endpoints.confirmRecipient(channel, code.value.trim());
      onSaved(await endpoints.preferences(), `Your ${what} is confirmed.`);
    } catch (error) {
      if (error.status !== 401) replace(feedback, message("error", error.message));
    }
  }));
  return h("fieldset", { class: "confirm" },
    h("legend", {}, `Confirm your ${what}`),
    h("p", { class: "hint" }, `Nothing is sent to ${address} until you confirm it with the code we send there.`),
    send, " ", code, " ", confirm, feedback);
}

function preferencesForm(prefs, onSaved, notice) {
  const feedback = h("div", {}, notice ? message("success", notice) : null);
  const submit = h("button", { type: "submit" }, "Save preferences");
  const quietOn = h("input", { type: "checkbox", id: "quiet_on", checked: Boolean(prefs.quiet_hours) });
  const quietStart = h("input", { type: "time", id: "quiet_start", value: prefs.quiet_hours ? prefs.quiet_hours.start : "22:00", "aria-label": "Quiet from" });
  const quietEnd = h("input", { type: "time", id: "quiet_end", value: prefs.quiet_hours ? prefs.quiet_hours.end : "07:00", "aria-label": "Quiet until" });
  const digest = h("select", {}, Array.from({ length: 24 }, (_, hour) =>
    h("option", { value: hour, selected: hour === prefs.digest_hour }, `${String(hour).padStart(2, "0")}:00`)));
  const form = h("form", { class: "prefs-form", novalidate: true },
    h("h2", { id: "events-title" }, "What to tell me, and how"),
    eventsTable(prefs),
    h("div", { class: "prefs-grid" },
      field("pref_email", "Email address", h("input", { type: "email", value: prefs.email || "", autocomplete: "email" }),
        "Leave empty to use your account's email."),
      field("pref_phone", "Phone for SMS", h("input", { type: "tel", value: prefs.phone || "", autocomplete: "tel", placeholder: "+14155552671" }),
        "International format. Leave empty to remove it."),
      field("pref_confidence", "Only tell me when the AI is at least this sure",
        h("input", { type: "number", min: 0, max: 100, step: 5, value: Math.round(prefs.min_confidence * 100) }), "Percent, 0–100."),
      field("pref_digest", "Daily summary at", digest, `Your time zone: ${prefs.timezone}.`),
    ),
    confirmBlock(prefs, "email", onSaved),
    confirmBlock(prefs, "sms", onSaved),
    h("fieldset", { class: "quiet" },
      h("legend", {}, "Quiet hours"),
      h("label", { class: "check" }, quietOn, " Hold notifications during quiet hours"),
      h("div", { class: "quiet-times" }, h("span", {}, "from "), quietStart, h("span", {}, " until "), quietEnd),
    ),
    feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(feedback);
    const events = {};
    for (const kind of prefs.kinds) {
      const shown = shownChannels(prefs);
      const hidden = (prefs.events[kind] || []).filter((c) => !shown.includes(c)); // kept as they are
      events[kind] = [...hidden, ...shown.filter((c) => form.elements[`${kind}:${c}`].checked)];
    }
    const body = {
      events,
      email: form.pref_email.value.trim() || null,
      phone: form.pref_phone.value.trim() || null,
      min_confidence: Math.min(100, Math.max(0, Number(form.pref_confidence.value) || 0)) / 100,
      digest_hour: Number(digest.value),
      quiet_hours: quietOn.checked ? { start: quietStart.value, end: quietEnd.value } : null,
    };
    await busy(submit, async () => {
      try {
        const saved = await endpoints.savePreferences(body);
        onSaved(saved, "Preferences saved.");
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });
  return form;
}

function recentList(items, timeZone) {
  if (!items.length) return h("p", { class: "empty" }, "Nothing sent yet.");
  return h("ul", { class: "sent-list" }, items.map((n) => h("li", {},
    h("strong", {}, n.title), " ",
    h("span", { class: `pill pill-${n.status === "sent" ? "online" : "offline"}` }, n.status), h("br"),
    h("span", { class: "hint" }, `${label(CHANNEL_LABELS, n.channel)} · ${dateTime(n.created_at, timeZone)}${n.device_serial ? ` · ${n.device_serial}` : ""}`),
  )));
}

export async function notificationsView(app, page, scope) {
  const formSlot = h("section", { class: "card", "aria-labelledby": "events-title" }, h("p", { class: "muted" }, "Loading…"));
  const recent = h("div", {});
  const pushSlot = h("div", {});
  const appsSlot = h("div", {});
  replace(page, h("h1", {}, "Notifications"), pushSlot, appsSlot, formSlot,
    h("section", { class: "card", "aria-labelledby": "recent-title" }, h("h2", { id: "recent-title" }, "Recently sent"), recent));
  const [prefs, log, push, apps] = await Promise.all([endpoints.preferences(), endpoints.notifications(10), pushCard(),
    appsCard()]);
  if (!scope.alive) return;
  replace(pushSlot, push);
  replace(appsSlot, apps);
  const render = (current, notice) => replace(formSlot, preferencesForm(current, render, notice));
  render(prefs);
  replace(recent, recentList(log.items, app.timeZone));
}
