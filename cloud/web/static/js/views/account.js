// My account: name, time zone (the day my photo clicks reset), tier.

import { api, availablePaths } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { browserTimeZone } from "../format.js";

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
        app.user = await api.patch("/api/users/me/", { name: form.profile_name.value.trim() || null, timezone: form.profile_tz.value.trim() });
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
      const [usage, devices] = await Promise.all([api.get("/api/usage", { month: month.value || currentMonth() }), api.get("/api/devices/")]);
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

export async function accountView(app, page, scope) {
  replace(page, h("h1", {}, "Account"), profileCard(app));
  const paths = await availablePaths();
  if (!scope.alive) return;
  if (paths["/api/usage"]) page.append(usageCard());
}
