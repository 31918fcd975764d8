// Web Push on this device: the service worker, the browser's subscription, and the card that offers it.

import { api } from "./api.js";
import { busy, h, message, replace } from "./dom.js";

const BASE = "/api/notifications/webpush";
const isIos = () => /iPhone|iPad|iPod/.test(navigator.userAgent);
const standalone = () => window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;

/** "supported", "ios-home-screen" (Safari on iOS pushes only from a home-screen app) or "unsupported". */
export function pushSupport() {
  if (isIos() && !standalone()) return "ios-home-screen";
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return "unsupported";
  return "supported";
}

/** Register the service worker (the page works without it; alerts need it). */
export function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return null;
  return navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => null);
}

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

async function thisBrowserSubscription() {
  const registration = await navigator.serviceWorker.getRegistration("/");
  return registration ? registration.pushManager.getSubscription() : null;
}

/** Ask for permission, subscribe this browser with the server's key and store the subscription. */
export async function notifyThisDevice() {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    throw new Error("Notifications are blocked for this site: allow them in the browser's site settings, then try again.");
  }
  await registerServiceWorker();
  const registration = await navigator.serviceWorker.ready;
  const { public_key: key } = await api.get(`${BASE}/key`);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription) await subscription.unsubscribe(); // made with another key, perhaps: start clean
  try {
    subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  } catch (error) {
    throw new Error(`This browser could not subscribe to push alerts (${error.message}).`);
  }
  return api.post(`${BASE}/subscriptions/`, subscription.toJSON());
}

const IOS_HINT = "On iPhone and iPad, alerts need mailcam on the home screen: tap Share, then \"Add to Home Screen\", " +
  "open mailcam from there and press \"Notify me on this device\".";

/**
 * The "Notify me on this device" card: the button, this user's browsers (each removable) and, on iOS
 * Safari, how to add the app to the home screen. `compact`: only when this browser is not subscribed yet.
 */
export async function pushCard({ compact = false } = {}) {
  const support = pushSupport();
  const [subscriptions, mine] = await Promise.all([
    api.get(`${BASE}/subscriptions/`),
    support === "supported" ? thisBrowserSubscription().catch(() => null) : null,
  ]);
  if (compact && (mine || support === "unsupported")) return null;
  const feedback = h("div", { "aria-live": "polite" });
  const card = h("section", { class: "card push-card", "aria-labelledby": "push-title" });
  const render = (items, notice) => {
    const button = h("button", { type: "button", class: "primary" }, "Notify me on this device");
    button.addEventListener("click", () => busy(button, async () => {
      try {
        const added = await notifyThisDevice();
        render(await api.get(`${BASE}/subscriptions/`), `Done: ${added.name} will get your mailbox alerts.`);
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    }));
    replace(card,
      h("h2", { id: "push-title" }, compact ? "Get mail alerts on this phone" : "Alerts on my devices"),
      h("p", { class: "hint" }, "No app needed: your browser shows mailcam's alerts, with the photo, even when this page is closed."),
      support === "ios-home-screen" ? h("p", { class: "msg msg-info ios-hint" }, IOS_HINT) : null,
      support === "supported" ? button : null,
      support === "unsupported" ? h("p", { class: "hint" }, "This browser cannot show push alerts.") : null,
      notice ? message("success", notice) : null,
      feedback,
      compact ? h("p", { class: "hint" }, "Or get them in another app (ntfy, Telegram, …) or by email: ",
        h("a", { href: "#/notifications" }, "Notifications"), ".") : deviceList(items, render),
    );
  };
  render(subscriptions);
  return card;
}

function deviceList(items, render) {
  if (!items.length) return h("p", { class: "empty" }, "No device gets push alerts yet.");
  return h("ul", { class: "push-devices" }, items.map((sub) => {
    const remove = h("button", { type: "button", class: "secondary" }, "Remove");
    remove.addEventListener("click", () => busy(remove, async () => {
      await api.del(`${BASE}/subscriptions/${sub.id}`);
      render(await api.get(`${BASE}/subscriptions/`), `${sub.name} gets no more alerts.`);
    }));
    return h("li", {}, h("span", {}, sub.name), " ", remove);
  }));
}
