// The service worker: shows mailcam's push alerts and opens the capture when one is tapped.
// Served at /sw.js so that its scope is the whole dashboard. It holds no credentials: the alert's
// photo comes through the short-lived signed link inside the (end-to-end encrypted) push payload.

const ICON = "/static/icons/icon-192.png";
const BADGE = "/static/icons/badge-96.png";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function alertOf(event) {
  if (!event.data) return { title: "mailcam", body: "" };
  try {
    return event.data.json();
  } catch {
    return { title: "mailcam", body: event.data.text() };
  }
}

self.addEventListener("push", (event) => {
  const alert = alertOf(event);
  const options = {
    body: alert.body || "",
    tag: alert.tag,
    icon: ICON,
    badge: BADGE,
    image: alert.image, // the signed thumbnail link
    timestamp: Date.now(),
    actions: alert.actions || [],
    data: { url: alert.url || "/#/", takePhotoUrl: alert.take_photo_url || null, kind: alert.kind },
  };
  event.waitUntil(self.registration.showNotification(alert.title || "mailcam", options));
});

// Open `url` in a dashboard window that is already open (the page routes it), else a new one.
async function openPage(url) {
  const target = new URL(url, self.location.origin);
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === target.origin);
  if (!open) return self.clients.openWindow(target.href);
  open.postMessage({ type: "mailcam:open", hash: target.hash || "#/" });
  try {
    await open.focus();
  } catch {
    // Focusing needs the tap's user activation; the page has been routed either way.
  }
  return open;
}

self.addEventListener("notificationclick", (event) => {
  const { url, takePhotoUrl } = event.notification.data || {};
  event.notification.close();
  const target = event.action === "take-photo" && takePhotoUrl ? takePhotoUrl : url || "/#/";
  event.waitUntil(openPage(target));
});
