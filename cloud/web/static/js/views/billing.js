// Premium: "Upgrade to premium" (Stripe Checkout), "Manage subscription" (Stripe's customer portal),
// the plan card on the account page, a failed-payment notice, and the pages Checkout returns to.
// Without payments set up on the server (GET /api/billing/ says enabled: false) none of it shows.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { dateTime } from "../format.js";

const PLAN_NAMES = { monthly: "Monthly", yearly: "Yearly" };

/** Send the browser to Stripe (Checkout or the portal); errors show in `feedback`. */
async function goTo(button, feedback, request) {
  await busy(button, async () => {
    try {
      const { url } = await request();
      window.location.assign(url);
    } catch (error) {
      if (error.status !== 401) replace(feedback, message("error", error.message));
    }
  });
}

function upgradeControls(billing) {
  const feedback = h("div", {});
  const plan = billing.plans.length > 1
    ? h("select", { class: "plan-choice", "aria-label": "Premium plan" },
      billing.plans.map((p) => h("option", { value: p }, PLAN_NAMES[p] || p)))
    : null;
  const button = h("button", { type: "button", class: "primary upgrade" }, "Upgrade to premium");
  button.addEventListener("click", () =>
    goTo(button, feedback, () => endpoints.checkout(plan ? plan.value : billing.plans[0])));
  return h("div", { class: "upgrade-offer" }, plan, " ", button, feedback);
}

/** "Upgrade to premium" under a used-up daily limit; nothing while billing is off or already premium. */
export function upgradeOffer() {
  const slot = h("div", { class: "upgrade-slot" });
  endpoints.billing().then((billing) => {
    if (!billing.enabled || billing.tier === "premium" || !billing.plans.length) return;
    replace(slot, h("p", { class: "hint" }, "Premium has no daily limit."), upgradeControls(billing));
  }).catch(() => {}); // the limit message stands on its own
  return slot;
}

/** A failed renewal: premium goes on for a while; say so where the owner looks every day. */
export function billingNotice(app) {
  const slot = h("div", { class: "billing-notice" });
  endpoints.billing().then((billing) => {
    if (billing.notice) replace(slot, message("error", billing.notice), manageButton());
  }).catch(() => {});
  return slot;
}

function manageButton() {
  const feedback = h("div", {});
  const button = h("button", { type: "button", class: "secondary manage" }, "Manage subscription");
  button.addEventListener("click", () => goTo(button, feedback, endpoints.billingPortal));
  return h("div", { class: "manage-slot" }, button, feedback);
}

function planText(billing, tz) {
  if (billing.tier !== "premium") return `Free: ${billing.free_clicks_per_day} photos on request a day.`;
  if (billing.status === "past_due" && billing.grace_until) return `Premium until ${dateTime(billing.grace_until, tz)} unless the payment goes through.`;
  if (billing.premium_until) return `Premium until ${dateTime(billing.premium_until, tz)} (cancelled; it will not renew).`;
  if (billing.current_period_end) return `Premium: photos on request without limit. Renews ${dateTime(billing.current_period_end, tz)}.`;
  return "Premium: photos on request without limit.";
}

/** The account page's plan card; empty while payments are not set up here. */
export function billingCard(app) {
  const card = h("section", { class: "card", "aria-labelledby": "plan-title", hidden: true });
  endpoints.billing().then((billing) => {
    if (!billing.enabled) return;
    replace(card,
      h("h2", { id: "plan-title" }, "Plan"),
      billing.notice ? message("error", billing.notice) : null,
      h("p", { class: "plan" }, planText(billing, app.timeZone)),
      billing.tier !== "premium" && billing.plans.length ? upgradeControls(billing) : null,
      billing.can_manage ? manageButton() : null,
    );
    card.hidden = false;
  }).catch((error) => {
    if (error.status !== 401) replace(card, message("error", error.message));
  });
  return card;
}

/** Where Stripe Checkout sends the browser back: a word about the outcome, then the dashboard. */
export async function billingReturnView(app, page, scope, outcome) {
  if (outcome === "success") {
    app.flashNext("success", "Thank you! Premium starts as soon as Stripe confirms the payment — usually within seconds.");
  } else {
    app.flashNext("info", "Checkout cancelled — nothing was charged. You can upgrade any time.");
  }
  replace(page, h("h1", {}, "Back from payment"));
  window.location.replace("#/"); // not kept in history: Back does not land here again
}
