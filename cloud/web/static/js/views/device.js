// One mailbox: its latest photo and result, "Take a photo now" with the clicks left,
// pending requests, and the photo history (paged, with full view and delete).

import { endpoints } from "../api.js";
import { busy, h, latestOnly, message, replace } from "../dom.js";
import { clicksLeft, dateTime, describeAnalysis, localMoment, relativeTime } from "../format.js";
import { authImage, thumbnailUrl } from "../images.js";
import { upgradeOffer } from "./billing.js";
import { confirmDialog, photoDialog } from "./dialogs.js";
import { batteryInfo, statusPill } from "./devices.js";
import { firmwareCard } from "./device_firmware.js";
import { settingsCard } from "./device_settings.js";
import { lifeCard } from "./device_history.js";
import { installerAccessCard } from "./installer_access.js";

export const PAGE_SIZE = 12;
const REQUESTED = "Requested — the mailbox will answer on its next wake";

function resultBlock(analysis, actions) {
  const result = describeAnalysis(analysis);
  return h("div", { class: "result-block" },
    h("p", { class: `result result-${result.state}` }, result.text),
    result.detail ? h("p", { class: "result-detail" }, result.detail) : null,
    actions ? actions(result) : null,
  );
}

// `extra`: "capture/<id>" opens that photo (a tapped alert), "take-photo" asks the mailbox for one (an alert's action).
export async function deviceView(app, page, scope, serial, extra) {
  const tz = () => app.timeZone;
  const els = {
    title: h("h1", {}, serial),
    meta: h("div", { class: "device-meta" }),
    calibration: h("div", { class: "calibration" }),
    latest: h("div", { class: "latest" }, h("p", { class: "muted" }, "Loading…")),
    clicks: h("p", { class: "clicks" }),
    reset: h("p", { class: "hint reset" }),
    triggerFeedback: h("div", { class: "trigger-feedback" }),
    triggerButton: h("button", { type: "button", class: "primary big" }, "Take a photo now"),
    pending: h("div", { class: "pending" }),
    history: h("div", { class: "history" }),
    historyFeedback: h("div", {}),
    pager: h("nav", { class: "pager", "aria-label": "History pages" }),
    settings: settingsCard(serial),
    firmware: firmwareCard(serial),
    life: lifeCard(serial, tz),
    installerAccess: installerAccessCard(serial),
  };
  let status = null;
  const pages = [null]; // the cursor of each page we have visited
  let historySignature = "";
  let latestSignature = null;
  let exhausted = false; // no clicks left today: the button stays disabled until the reset

  replace(page,
    h("p", { class: "back" }, h("a", { href: "#/" }, "← All mailboxes")),
    h("header", { class: "device-head" }, els.title, els.meta),
    els.calibration,
    h("div", { class: "device-grid" },
      h("section", { class: "card", "aria-labelledby": "latest-title" }, h("h2", { id: "latest-title" }, "Latest photo"), els.latest),
      h("section", { class: "card", "aria-labelledby": "trigger-title" },
        h("h2", { id: "trigger-title" }, "Photo on request"),
        els.clicks, els.reset, els.triggerButton, els.triggerFeedback,
        h("h3", { id: "pending-title" }, "Waiting requests"), els.pending,
      ),
    ),
    h("section", { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"), els.historyFeedback, els.history, els.pager),
    els.life,
    els.settings,
    els.firmware,
    els.installerAccess,
  );

  // --- device facts and status -------------------------------------------------

  function renderMeta(device) {
    els.title.textContent = device.name;
    els.installerAccess.show(device);
    document.title = `${device.name} — mailcam`;
    replace(els.meta,
      statusPill(device.status), " ",
      h("span", { class: "serial" }, device.serial),
      h("ul", { class: "facts inline" },
        h("li", {}, batteryInfo(device.battery_voltage)),
        h("li", {}, h("span", { class: "label" }, "Last seen "), relativeTime(device.last_seen_at)),
        h("li", {}, h("span", { class: "label" }, "Firmware "), device.firmware_version || "unknown"),
        device.mailbox === "mail" && device.mail_since
          ? h("li", { class: "mail-since" }, `Mail since ${dateTime(device.mail_since, tz())}`) : null,
      ),
    );
    replace(els.calibration, device.calibrated ? null : h("section", { class: "card notice", role: "note", "aria-label": "Calibration" },
      h("h2", {}, "Uncalibrated"),
      h("p", {}, "Open the mailbox, take a photo of it empty, and press “This is empty” under that photo. ",
        "Until then mailcam cannot tell mail from the mailbox itself, and sends no mail alerts."),
    ));
  }

  function emptyButton(capture) {
    const slot = h("span", { class: "reference-slot" });
    const button = h("button", { type: "button", class: "secondary small" }, "This is empty");
    button.addEventListener("click", () => busy(button, async () => {
      try {
        await endpoints.setReference(capture.capture_id);
        replace(slot, message("success", "Saved as your empty mailbox — mail alerts compare with it."));
        refresh();
      } catch (error) {
        if (error.status !== 401) replace(slot, message("error", error.message));
      }
    }));
    slot.append(button);
    return slot;
  }

  function retryButton(capture) {
    const slot = h("span", { class: "retry-slot" });
    const button = h("button", { type: "button", class: "secondary small" }, "Retry analysis");
    button.addEventListener("click", () => busy(button, async () => {
      try {
        await endpoints.reanalyse(capture.capture_id);
        replace(slot, message("success", "Analysis requested again — the result will show here."));
      } catch (error) {
        if (error.status !== 401) replace(slot, message("error", error.message));
      }
    }));
    slot.append(button);
    return slot;
  }

  function captureActions(capture) {
    return (result) => {
      if (result.state === "failed") return retryButton(capture);
      if (result.state === "retake") {
        const button = h("button", { type: "button", class: "secondary small" }, "Retake photo");
        button.addEventListener("click", () => takePhoto(button));
        return button;
      }
      // Any good photo can be the empty reference ("this photo is empty"): calibration and correction.
      return capture.analysis && capture.analysis.status === "done" ? emptyButton(capture) : null;
    };
  }

  function openPhoto(capture) {
    photoDialog(capture, `Photo taken ${dateTime(capture.taken_at, tz())}`, resultBlock(capture.analysis));
  }

  function thumbButton(capture, cls) {
    const caption = dateTime(capture.taken_at, tz());
    return h("button", { type: "button", class: `thumb-btn ${cls || ""}`, "aria-label": `View full photo taken ${caption}`, onclick: () => openPhoto(capture) },
      authImage(() => thumbnailUrl(capture.capture_id), `Photo taken ${caption}`, { class: "thumb", width: 320, height: 240 }));
  }

  function renderLatest() {
    const capture = status.latest_capture;
    // Re-draw only on a change (no image flicker, and a retry notice stays until the result changes).
    const signature = JSON.stringify(capture && [capture.capture_id, capture.analysis, relativeTime(capture.taken_at)]);
    if (signature === latestSignature) return;
    latestSignature = signature;
    if (!capture) {
      replace(els.latest, h("p", { class: "empty" }, "No photos yet. Take one now, or wait for the mailbox's next wake."));
      return;
    }
    replace(els.latest,
      thumbButton(capture, "latest-thumb"),
      h("p", { class: "when" }, `Taken ${relativeTime(capture.taken_at)} · ${dateTime(capture.taken_at, tz())}`,
        capture.trigger_type === "manual" ? " · on request" : ""),
      resultBlock(capture.analysis, captureActions(capture)),
    );
  }

  function renderClicks(used, limit, resetAt) {
    const c = clicksLeft(used, limit);
    els.clicks.textContent = c.text;
    els.reset.textContent = limit === null || limit === undefined ? "" : `Resets ${localMoment(resetAt, tz())}`;
    exhausted = c.left === 0;
    els.triggerButton.disabled = exhausted;
    const shown = els.triggerFeedback.querySelector(".limit");
    if (exhausted && !shown) {
      els.triggerFeedback.append(limitMessage(used, limit, resetAt)); // after "Requested…", if that is shown
    } else if (!exhausted && shown) {
      replace(els.triggerFeedback); // a new day: the limit message is history
    }
  }

  function limitMessage(used, limit, resetAt) {
    return h("div", { class: "limit" },
      message("error", `Daily limit reached: you have used ${used} of ${limit} photos today. More from ${localMoment(resetAt, tz())}.`),
      upgradeOffer());
  }

  const loadStatus = latestOnly(async (current) => {
    const [device, fresh] = await Promise.all([endpoints.device(serial), endpoints.status(serial)]);
    if (!scope.alive || !current()) return;
    renderMeta(device);
    status = fresh;
    renderLatest();
    renderClicks(status.clicks_used_today, status.clicks_limit, status.clicks_reset_at);
  });

  // --- take a photo now ----------------------------------------------------------

  async function takePhoto(button) {
    replace(els.triggerFeedback);
    await busy(button, async () => {
      try {
        const { data } = await endpoints.trigger(serial);
        replace(els.triggerFeedback, message("success", REQUESTED));
        renderClicks(data.clicks_used, data.clicks_limit, data.reset_at);
        await loadTriggers();
      } catch (error) {
        if (error.status === 429 && error.code === "click_limit_exceeded") {
          replace(els.triggerFeedback, limitMessage(error.body.clicks_used, error.body.clicks_limit, error.body.reset_at));
          renderClicks(error.body.clicks_used, error.body.clicks_limit, error.body.reset_at);
        } else if (error.status !== 401) {
          replace(els.triggerFeedback, message("error", error.message));
        }
      }
    });
    els.triggerButton.disabled = exhausted;
  }
  els.triggerButton.addEventListener("click", () => takePhoto(els.triggerButton));

  // --- pending requests --------------------------------------------------------------

  function triggerRow(trigger) {
    const when = relativeTime(trigger.requested_at);
    const state = trigger.status === "delivered" ? "The mailbox got the request — waiting for its photo" : "Waiting for the mailbox's next wake";
    const cancel = h("button", { type: "button", class: "secondary small", "aria-label": `Cancel the request made ${when}` }, "Cancel");
    cancel.addEventListener("click", () => busy(cancel, async () => {
      try {
        const ended = await endpoints.cancelTrigger(trigger.trigger_id);
        replace(els.triggerFeedback, message("info", ended.click_refunded ? "Request cancelled — your photo is given back." : "Request cancelled."));
        await Promise.all([loadTriggers(), loadStatus()]);
      } catch (error) {
        if (error.status !== 401) replace(els.triggerFeedback, message("error", error.message));
      }
    }));
    return h("li", { class: "pending-row" },
      h("div", {}, h("strong", {}, `Requested ${when}`), h("br"), h("span", { class: "hint" }, `${state} · expires ${localMoment(trigger.expires_at, tz())}`)),
      cancel);
  }

  const loadTriggers = latestOnly(async (current) => {
    const triggers = await endpoints.triggers(serial);
    if (!scope.alive || !current()) return;
    const open = triggers.filter((t) => t.status === "pending" || t.status === "delivered");
    replace(els.pending, open.length
      ? h("ul", { class: "pending-list", "aria-labelledby": "pending-title" }, open.map(triggerRow))
      : h("p", { class: "muted" }, "None."));
  });

  // --- history -------------------------------------------------------------------------

  function historyItem(capture) {
    const caption = dateTime(capture.taken_at, tz());
    const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete photo taken ${caption}` }, "Delete");
    del.addEventListener("click", () => deleteCapture(capture, caption, del));
    return h("li", { class: "capture", dataset: { captureId: capture.capture_id } },
      thumbButton(capture),
      h("p", { class: "when" }, h("time", { datetime: capture.taken_at }, caption), capture.trigger_type === "manual" ? " · on request" : ""),
      resultBlock(capture.analysis),
      del);
  }

  async function deleteCapture(capture, caption, button) {
    const confirmed = await confirmDialog({
      title: "Delete this photo?",
      text: `The photo taken ${caption} and its analysis will be deleted for good.`,
      confirmLabel: "Delete photo",
    });
    if (!confirmed) return;
    await busy(button, async () => {
      try {
        await endpoints.deleteCapture(capture.capture_id);
        replace(els.historyFeedback, message("success", "Photo deleted."));
        await loadHistory();
        await loadStatus();
      } catch (error) {
        if (error.status !== 401) replace(els.historyFeedback, message("error", error.message));
      }
    });
  }

  // Only the latest load may draw: a live refresh of page 1 that answers after the user paged on
  // would otherwise put page 1's photos under the "Page 2" label.
  const loadHistory = latestOnly(async (current, { quiet = false } = {}) => {
    const index = pages.length - 1;
    let result = await endpoints.captures(serial, pages[index], PAGE_SIZE);
    if (!current()) return;
    if (!result.items.length && index > 0) {
      pages.pop(); // this page emptied (deletions): show the one before
      result = await endpoints.captures(serial, pages[pages.length - 1], PAGE_SIZE);
      if (!current()) return;
    }
    if (!scope.alive) return;
    const signature = JSON.stringify([pages.length, result.items.map((c) => [c.capture_id, c.analysis && c.analysis.status])]);
    if (quiet && signature === historySignature) return;
    historySignature = signature;
    replace(els.history, result.items.length
      ? h("ul", { class: "capture-grid" }, result.items.map(historyItem))
      : h("p", { class: "empty" }, "No photos yet."));
    renderPager(result.next_cursor);
  });

  function renderPager(nextCursor) {
    const newer = h("button", { type: "button", class: "secondary", disabled: pages.length === 1 }, "← Newer");
    const older = h("button", { type: "button", class: "secondary", disabled: !nextCursor }, "Older →");
    newer.addEventListener("click", () => busy(newer, async () => {
      pages.pop();
      await loadHistory();
      els.history.scrollIntoView({ block: "nearest" });
    }));
    older.addEventListener("click", () => busy(older, async () => {
      pages.push(nextCursor);
      await loadHistory();
      els.history.scrollIntoView({ block: "nearest" });
    }));
    if (pages.length === 1 && !nextCursor) {
      replace(els.pager); // everything fits on one page
      return;
    }
    replace(els.pager, newer, h("span", { class: "page-no", "aria-live": "polite" }, `Page ${pages.length}`), older);
  }

  async function refresh() {
    await Promise.all([loadStatus(), loadTriggers(), els.settings.load(), els.firmware.load(),
      pages.length === 1 ? loadHistory({ quiet: true }) : null]);
  }

  // Pushed: this mailbox's events redraw the page (a trigger's state moves the "photo on request" card too).
  scope.onLive((event) => event.device_serial === serial, () => refresh().catch((error) => {
    if (error.status !== 401) app.flash("error", error.message);
  }));
  // The life charts load once (they change by the day, not by the wake).
  await Promise.all([loadStatus(), loadTriggers(), loadHistory(), els.settings.load(), els.firmware.load(),
    els.life.load()]);
  if (!extra || !scope.alive) return;
  // Back to the mailbox's own address: a reload must not open the photo or spend a click again.
  history.replaceState(null, "", `#/mailbox/${encodeURIComponent(serial)}`);
  if (extra.startsWith("capture/")) {
    openPhoto(await endpoints.capture(extra.slice("capture/".length)));
  } else if (extra === "take-photo" && !els.triggerButton.disabled) {
    await takePhoto(els.triggerButton);
  }
}
