// My account: name, time zone (the day my photo clicks reset), tier.

import { api } from "../api.js";
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

export async function accountView(app, page) {
  replace(page, h("h1", {}, "Account"), profileCard(app));
}
