// The dashboard shell: hash routes, the header, session handling and live updates (pushed, not polled).

import { auth, endpoints, onUnauthorized } from "./api.js";
import { h, message, replace } from "./dom.js";
import { browserTimeZone } from "./format.js";
import { forgetImages } from "./images.js";
import { onLiveEvent, startLive, stopLive } from "./live.js";
import { registerServiceWorker } from "./push.js";
import { accountView } from "./views/account.js";
import { billingReturnView } from "./views/billing.js";
import { loginView, signupView } from "./views/auth.js";
import { notificationsView } from "./views/notifications.js";
import { deviceView } from "./views/device.js";
import { devicesView } from "./views/devices.js";
import { gatewaysView } from "./views/gateways.js";

let carried = null; // a flash message for the next page

const app = {
  user: null,
  main: document.getElementById("main"),
  returnTo: null,

  get timeZone() {
    return (this.user && this.user.timezone) || browserTimeZone();
  },

  navigate(hash) {
    if (window.location.hash === hash) route();
    else window.location.hash = hash;
  },

  /** A message above the page, e.g. "Your session has ended". */
  flash(kind, text) {
    const box = document.getElementById("flash");
    replace(box, text ? message(kind, text) : null);
  },

  /** A message to show on the next page (it survives one navigation). */
  flashNext(kind, text) {
    carried = { kind, text };
  },

  async signedIn(token) {
    auth.set(token);
    this.user = await endpoints.me();
    const target = this.returnTo && !this.returnTo.startsWith("#/log") ? this.returnTo : "#/";
    this.returnTo = null;
    this.navigate(target);
  },

  async logout() {
    try {
      await endpoints.logout();
    } catch {
      // The token is dropped locally either way.
    }
    this.endSession();
    this.flashNext("info", "You are logged out.");
    this.navigate("#/login");
  },

  endSession() {
    stopLive();
    auth.clear();
    this.user = null;
    forgetImages();
  },
};

onUnauthorized(() => {
  if (window.location.hash === "#/login") return; // several requests failed at once
  app.returnTo = window.location.hash;
  app.endSession();
  app.flashNext("error", "Your session has ended — please log in again.");
  app.navigate("#/login");
});

// --- live updates, owned by the current page ---------------------------------

let scope = null;

function newScope() {
  if (scope) scope.close();
  const unsubscribes = [];
  scope = {
    alive: true,
    /** Run `task` when a live event for which `wants(event)` is true arrives, while this page is shown.
     * A burst of events runs it once more after the current run, never overlapping. */
    onLive(wants, task) {
      let running = null;
      let again = false;
      const run = async () => {
        if (running) {
          again = true;
          return;
        }
        running = (async () => {
          do {
            again = false;
            await task();
          } while (again && this.alive);
        })();
        try {
          await running;
        } finally {
          running = null;
        }
      };
      unsubscribes.push(onLiveEvent((event) => {
        if (this.alive && (event.kind === "reset" || wants(event))) run();
      }));
    },
    /** Run `task` every `ms` while this page is shown: only for what no live event reports (a
     * gateway's own status reports arrive every half minute and are not events). */
    every(ms, task) {
      const timer = setInterval(() => {
        if (this.alive) task().catch(() => {});
      }, ms);
      unsubscribes.push(() => clearInterval(timer));
    },
    close() {
      this.alive = false;
      unsubscribes.forEach((unsubscribe) => unsubscribe());
    },
  };
  return scope;
}

// --- routes -------------------------------------------------------------------

const ROUTES = [
  { pattern: /^#\/login$/, view: loginView, anonymous: true },
  { pattern: /^#\/signup$/, view: signupView, anonymous: true },
  { pattern: /^#\/mailbox\/([^/]+)(?:\/(capture\/[^/]+|take-photo))?$/, view: deviceView },
  { pattern: /^#\/account$/, view: accountView },
  { pattern: /^#\/notifications$/, view: notificationsView },
  { pattern: /^#\/billing\/(success|cancelled)$/, view: billingReturnView },
  { pattern: /^#\/gateways$/, view: gatewaysView },
  { pattern: /^(#\/?)?$/, view: devicesView },
];

function renderHeader() {
  const header = document.getElementById("header-actions");
  if (!app.user || !auth.token) {
    replace(header);
    return;
  }
  replace(
    header,
    h("nav", { "aria-label": "Main" },
      h("a", { href: "#/" }, "Mailboxes"),
      h("a", { href: "#/notifications" }, "Notifications"),
      h("a", { href: "#/gateways" }, "Gateways"),
      h("a", { href: "#/account" }, "Account"),
    ),
    h("span", { class: "who", title: app.user.email }, app.user.name || app.user.email),
    h("button", { type: "button", class: "secondary", onclick: () => app.logout() }, "Log out"),
  );
}

async function route() {
  const hash = window.location.hash || "#/";
  const match = ROUTES.map((r) => ({ r, m: hash.match(r.pattern) })).find((x) => x.m) || { r: ROUTES[ROUTES.length - 1], m: [] };
  const pageScope = newScope();
  document.title = "mailcam";
  if (!auth.token) app.user = null;
  const flash = carried;
  carried = null;
  app.flash(flash && flash.kind, flash && flash.text);
  if (!match.r.anonymous && !auth.token) {
    app.returnTo = hash;
    carried = flash;
    app.navigate("#/login");
    return;
  }
  if (!match.r.anonymous && !app.user) {
    try {
      app.user = await endpoints.me();
    } catch (error) {
      if (error.status !== 401) app.flash("error", error.message);
      return;
    }
  }
  if (match.r.anonymous && auth.token && app.user) {
    carried = flash;
    app.navigate("#/");
    return;
  }
  renderHeader();
  if (app.user) startLive();
  const page = h("div", { class: "page" });
  replace(app.main, page);
  const params = match.m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  const loading = match.r.view(app, page, pageScope, ...params);
  // Views draw their heading before their first await: move focus there for screen readers.
  const target = page.querySelector("[autofocus]") || page.querySelector("h1");
  if (target) {
    if (target.tagName === "H1") target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: true });
  }
  try {
    await loading;
  } catch (error) {
    if (error.status !== 401 && pageScope.alive) replace(page, message("error", error.message));
  }
}

window.addEventListener("hashchange", route);
// A tapped push alert asks an open dashboard to show its capture (see sw.js).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data && event.data.type === "mailcam:open" && typeof event.data.hash === "string") app.navigate(event.data.hash);
  });
}
registerServiceWorker();
// The skip link moves focus without touching the route held in the hash.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  app.main.focus();
});
route();
