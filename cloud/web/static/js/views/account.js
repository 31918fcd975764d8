// My account: name, time zone (the day my photo clicks reset), tier.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { browserTimeZone, dateTime, relativeTime } from "../format.js";
import { billingCard } from "./billing.js";
import { confirmDialog } from "./dialogs.js";

function profileCard(app) {
  const feedback = h("div", {});
  const submit = h("button", { type: "submit" }, "Save");
  const form = h("form", { novalidate: true },
    h("div", { class: "field" }, h("label", { for: "profile_name" }, "Name"),
      h("input", { id: "profile_name", name: "profile_name", maxlength: 100, value: app.user.name || "" })),
    h("div", { class: "field" }, h("label", { for: "profile_tz" }, "Time zone"),
      h("input", { id: "profile_tz", name: "profile_tz", maxlength: 64, value: app.user.timezone, "aria-describedby": "tz-hint" }),
      h("p", { class: "hint", id: "tz-hint" }, `Your daily photos reset at midnight in this zone. This browser is in ${browserTimeZone()}.`)),
    feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(feedback);
    await busy(submit, async () => {
      try {
        app.user = await endpoints.updateMe({ name: form.profile_name.value.trim() || null, timezone: form.profile_tz.value.trim() });
        replace(feedback, message("success", "Saved."));
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });
  return h("section", { class: "card", "aria-labelledby": "profile-title" },
    h("h2", { id: "profile-title" }, "Profile"),
    h("p", {}, h("span", { class: "label" }, "Email "), app.user.email, " · ",
      h("span", { class: "label" }, "Plan "), app.user.tier === "premium" ? "Premium" : "Free"),
    form);
}

const money = (usd) => `$${usd.toFixed(usd > 0 && usd < 0.01 ? 4 : 2)}`;

function currentMonth() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
}

function usageCard() {
  const body = h("div", { "aria-live": "polite" });
  const month = h("input", { type: "month", id: "usage_month", value: currentMonth(), max: currentMonth() });
  async function load() {
    replace(body, h("p", { class: "muted" }, "Loading…"));
    try {
      const [usage, devices] = await Promise.all([endpoints.usage(month.value || currentMonth()), endpoints.devices()]);
      const names = Object.fromEntries(devices.map((d) => [d.serial, d.name]));
      if (!usage.devices.length) {
        replace(body, h("p", { class: "empty" }, "No analyses this month."));
        return;
      }
      replace(body,
        h("div", { class: "table-wrap" }, h("table", { class: "usage" },
          h("caption", { class: "sr-only" }, `AI usage for ${usage.month}`),
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Mailbox"), h("th", { scope: "col" }, "AI calls"), h("th", { scope: "col" }, "No-cost checks"),
            h("th", { scope: "col" }, "Cost"), h("th", { scope: "col" }, "Budget"))),
          h("tbody", {}, usage.devices.map((d) => h("tr", {},
            h("th", { scope: "row" }, names[d.device_serial] || d.device_serial),
            h("td", {}, String(d.model_calls), d.failed_calls ? ` (${d.failed_calls} failed)` : ""),
            h("td", {}, String(d.offline_analyses + d.cache_hits + d.unchanged_skips)),
            h("td", {}, money(d.cost_usd)),
            h("td", { class: d.budget_reached ? "over" : "" }, `${money(d.budget_usd)}${d.budget_reached ? " — reached" : ""}`),
          ))),
        )),
        h("p", { class: "total" }, `Total ${money(usage.total_cost_usd)} for ${usage.total_model_calls} AI call${usage.total_model_calls === 1 ? "" : "s"}.`),
      );
    } catch (error) {
      if (error.status !== 401) replace(body, message("error", error.message));
    }
  }
  month.addEventListener("change", load);
  load();
  return h("section", { class: "card", "aria-labelledby": "usage-title" },
    h("h2", { id: "usage-title" }, "AI usage"),
    h("div", { class: "field inline-field" }, h("label", { for: "usage_month" }, "Month"), month),
    body);
}

function apiKeysCard(app) {
  const list = h("div", { "aria-live": "polite" });
  const created = h("div", {});
  const submit = h("button", { type: "submit" }, "Create key");
  const form = h("form", { class: "key-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "key_name" }, "Key name"),
      h("input", { id: "key_name", name: "key_name", maxlength: 100, placeholder: "Home Assistant", required: true })),
    h("div", { class: "field" }, h("label", { for: "key_scope" }, "Allowed to"),
      h("select", { id: "key_scope", name: "key_scope" },
        h("option", { value: "read" }, "Read status and photos"),
        h("option", { value: "trigger" }, "Read and take photos"))),
    submit);

  async function load() {
    const keys = await endpoints.apiKeys();
    const live = keys.filter((k) => !k.revoked_at);
    replace(list, live.length
      ? h("ul", { class: "key-list", "aria-label": "My API keys" }, live.map(keyRow))
      : h("p", { class: "empty" }, "No API keys."));
  }

  function keyRow(key) {
    const revoke = h("button", { type: "button", class: "danger small", "aria-label": `Revoke key ${key.name}` }, "Revoke");
    revoke.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: `Revoke “${key.name}”?`, text: "Anything using this key stops working at once.", confirmLabel: "Revoke key" });
      if (!ok) return;
      await busy(revoke, async () => {
        try {
          await endpoints.revokeApiKey(key.id);
          replace(created, message("info", `Key “${key.name}” revoked.`));
          await load();
        } catch (error) {
          if (error.status !== 401) replace(created, message("error", error.message));
        }
      });
    });
    return h("li", { class: "key-row" },
      h("div", {}, h("strong", {}, key.name), " ", h("code", {}, `${key.prefix}…`), h("br"),
        h("span", { class: "hint" }, `${key.scope === "trigger" ? "Read and take photos" : "Read only"} · created ${dateTime(key.created_at, app.timeZone)} · `
          + (key.last_used_at ? `last used ${relativeTime(key.last_used_at)}` : "never used"))),
      revoke);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(created);
    const name = form.key_name.value.trim();
    if (!name) {
      replace(created, message("error", "Give the key a name, e.g. the system that will use it."));
      return;
    }
    await busy(submit, async () => {
      try {
        const key = await endpoints.createApiKey(name, form.key_scope.value);
        form.reset();
        replace(created, h("div", { class: "msg msg-success", role: "status" },
          h("p", {}, `Key “${key.name}” created. Copy it now — it will not be shown again:`),
          h("input", { class: "secret", readonly: true, value: key.key, "aria-label": "The new API key", onfocus: (e) => e.target.select() })));
        await load();
      } catch (error) {
        if (error.status !== 401) replace(created, message("error", error.message));
      }
    });
  });
  load().catch((error) => {
    if (error.status !== 401) replace(list, message("error", error.message));
  });
  return h("section", { class: "card", "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "API keys"),
    h("p", { class: "hint" }, "For home automation: a key lets another system read your mailboxes (and, if allowed, take photos)."),
    list, created, form);
}

export async function accountView(app, page) {
  replace(page, h("h1", {}, "Account"), profileCard(app), billingCard(app), usageCard(), apiKeysCard(app));
}
