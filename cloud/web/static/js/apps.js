// "Other apps": the user's Apprise links (ntfy, Telegram, Pushover, …), masked, each testable and removable.

import { api } from "./api.js";
import { busy, h, message, replace } from "./dom.js";

const BASE = "/api/notifications/apprise/targets/";

export async function appsCard() {
  const card = h("section", { class: "card apps-card", "aria-labelledby": "apps-title" });
  const render = (items, notice, kind = "success") => {
    const input = h("input", { id: "apprise_url", name: "apprise_url", type: "text", autocomplete: "off", spellcheck: "false",
      placeholder: "ntfy://ntfy.sh/my-mailbox-alerts", "aria-describedby": "apprise-hint", maxlength: 2000 });
    const add = h("button", { type: "submit" }, "Add app");
    const form = h("form", { class: "apps-form", novalidate: true },
      h("div", { class: "field" },
        h("label", { for: "apprise_url" }, "App link (Apprise URL)"), input,
        h("p", { class: "hint", id: "apprise-hint" },
          "ntfy, Telegram, Pushover, Gotify, Discord, Matrix, Signal, Slack and many more: see the Apprise wiki for each app's link. ",
          "The link is stored encrypted and never shown again in full.")),
      add);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(add, async () => {
        try {
          const made = await api.post(BASE, { url: input.value.trim() });
          render(await api.get(BASE), `Added ${made.label}. Press "Send test" to check it.`);
        } catch (error) {
          if (error.status !== 401) render(items, error.message, "error");
        }
      });
    });
    replace(card, h("h2", { id: "apps-title" }, "Other apps"),
      items.length ? h("ul", { class: "apps-list" }, items.map((t) => targetRow(t, render))) : null,
      notice ? message(kind, notice) : null, form);
  };
  render(await api.get(BASE));
  return card;
}

function targetRow(target, render) {
  const test = h("button", { type: "button", class: "secondary" }, "Send test");
  const remove = h("button", { type: "button", class: "secondary" }, "Remove");
  test.addEventListener("click", () => busy(test, async () => {
    const result = await api.post(`${BASE}${target.id}/test`);
    render(await api.get(BASE), result.detail, result.sent ? "success" : "error");
  }));
  remove.addEventListener("click", () => busy(remove, async () => {
    await api.del(`${BASE}${target.id}`);
    render(await api.get(BASE), `${target.label} gets no more alerts.`);
  }));
  return h("li", {}, h("code", {}, target.label), " ", test, " ", remove);
}
