// The mailbox's life in pictures (plain SVG, no library): battery voltage with the low-battery line and
// a "replace or charge by" date, deliveries per day and by time of day, wakes and awake time per day.
// Days are the owner's calendar days; the server counts them (GET /api/devices/{serial}/history).

import { endpoints } from "../api.js";
import { h, message, replace } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 640; // viewBox units; the SVG scales to the card's width
const H = 180;
const PAD = { left: 44, right: 12, top: 12, bottom: 26 };
const RANGES = [[7, "7 days"], [28, "4 weeks"], [90, "3 months"]];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  for (const child of children.flat()) if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function chart(label, ...children) {
  return s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" },
    s("title", {}, label), ...children);
}

const scale = (d0, d1, r0, r1) => (x) => (d1 === d0 ? (r0 + r1) / 2 : r0 + ((x - d0) / (d1 - d0)) * (r1 - r0));

function shortDay(isoDay) { // an ISO date is already the owner's day: format it as is
  return new Intl.DateTimeFormat(undefined, { timeZone: "UTC", day: "numeric", month: "short" })
    .format(new Date(`${isoDay}T00:00:00Z`));
}

function longDate(iso, timeZone) {
  return new Intl.DateTimeFormat(undefined, { timeZone, day: "numeric", month: "short", year: "numeric" }).format(new Date(iso));
}

/** Bars, one per value; every few get an x label. */
export function barChart(label, values, labels, { unit = "", cls = "bar" } = {}) {
  const max = Math.max(1, ...values);
  const x = scale(0, values.length, PAD.left, W - PAD.right);
  const y = scale(0, max, H - PAD.bottom, PAD.top);
  const every = Math.ceil(values.length / 8);
  const width = Math.max(1, (W - PAD.left - PAD.right) / values.length - 2);
  return chart(label,
    s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }),
    s("text", { class: "tick", x: PAD.left - 6, y: y(max) + 4, "text-anchor": "end" }, `${round(max)}${unit}`),
    values.map((v, i) => s("rect", { class: cls, x: x(i) + 1, y: y(v), width, height: Math.max(0, y(0) - y(v)) },
      s("title", {}, `${labels[i]}: ${round(v)}${unit}`))),
    labels.map((text, i) => (i % every === 0
      ? s("text", { class: "tick", x: x(i) + width / 2, y: H - 8, "text-anchor": "middle" }, text) : null)),
  );
}

const round = (v) => (Number.isInteger(v) ? v : v.toFixed(1));

/** Voltage over time, the threshold line, and the projected crossing with its range (when there is one). */
export function batteryChart(battery, days) {
  const { points, threshold_v: threshold, forecast } = battery;
  const now = Date.now() / 1000;
  const start = Math.min(now - days.length * 86400, ...points.map((p) => p[0]));
  const projected = forecast.status === "projected" ? Date.parse(forecast.date) / 1000 : null;
  const span = now - start;
  // Show the date when it is near enough to read on this chart; a far date is stated in words only.
  const end = projected && projected - now < span ? Math.max(now, Date.parse(forecast.latest || forecast.date) / 1000) : now;
  const volts = points.map((p) => p[1]);
  const lo = Math.min(threshold - 0.1, ...volts);
  const hi = Math.max(4.2, ...volts);
  const x = scale(start, Math.min(end, start + 2 * span), PAD.left, W - PAD.right);
  const y = scale(lo, hi, H - PAD.bottom, PAD.top);
  const clampX = (t) => Math.min(W - PAD.right, Math.max(PAD.left, x(t)));
  const yTicks = [lo, threshold, hi].map((v) => s("text", { class: "tick", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v.toFixed(2)} V`));
  const parts = [
    s("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }),
    ...yTicks,
    s("line", { class: "threshold", x1: PAD.left, x2: W - PAD.right, y1: y(threshold), y2: y(threshold) },
      s("title", {}, `Low battery: ${threshold.toFixed(2)} V`)),
    s("text", { class: "threshold-label", x: W - PAD.right - 4, y: y(threshold) - 5, "text-anchor": "end" }, `low battery ${threshold.toFixed(2)} V`),
    s("text", { class: "tick", x: PAD.left, y: H - 8 }, shortDay(days[0])),
    s("text", { class: "tick", x: clampX(now), y: H - 8, "text-anchor": "end" }, "now"),
  ];
  if (projected && end > now && points.length) {
    const early = Date.parse(forecast.earliest) / 1000;
    const late = forecast.latest ? Date.parse(forecast.latest) / 1000 : end;
    parts.push(
      s("rect", { class: "forecast-range", x: clampX(early), y: PAD.top, width: Math.max(1, clampX(late) - clampX(early)), height: H - PAD.bottom - PAD.top }),
      s("line", { class: "forecast", x1: x(points[points.length - 1][0]), y1: y(volts[volts.length - 1]), x2: clampX(projected), y2: y(threshold) }),
    );
  }
  if (points.length) {
    parts.push(s("polyline", { class: "battery-line", points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
  }
  return chart(`Battery voltage since ${shortDay(days[0])}, low-battery line at ${threshold.toFixed(2)} V`, ...parts);
}

export function describeForecast(forecast, timeZone) {
  if (forecast.status === "below") return message("error", "The battery is at the low-battery level: replace or charge it now.");
  if (forecast.status === "none") return h("p", { class: "forecast-text muted" }, `No replace-by date yet: ${forecast.reason}.`);
  const range = forecast.latest
    ? `between ${longDate(forecast.earliest, timeZone)} and ${longDate(forecast.latest, timeZone)}`
    : `not before ${longDate(forecast.earliest, timeZone)}`;
  return h("p", { class: "forecast-text" },
    h("strong", {}, `Replace or charge by about ${longDate(forecast.date, timeZone)}`), ` (${range}).`);
}

export function lifeCard(serial, timeZone) {
  const body = h("div", { class: "life" }, h("p", { class: "muted" }, "Loading…"));
  const range = h("select", { id: "life-range" }, RANGES.map(([days, text]) => h("option", { value: days, selected: days === 28 }, text)));
  const card = h("section", { class: "card", "aria-labelledby": "life-title" },
    h("div", { class: "card-head" }, h("h2", { id: "life-title" }, "Mailbox life"),
      h("label", { for: "life-range", class: "inline-label" }, "Show ", range)),
    body);

  function figure(title, svg, ...notes) {
    return h("figure", { class: "life-chart" }, h("figcaption", {}, title), svg, ...notes);
  }

  function render(data) {
    const tz = timeZone();
    const days = data.daily.day;
    const labels = days.map((d) => shortDay(d));
    const times = data.delivery_times;
    const typical = times.typical
      ? h("p", {}, `Mail usually comes around ${times.typical} (half of it between ${times.usual_from} and ${times.usual_to}).`)
      : h("p", { class: "muted" }, "Too few deliveries yet for a usual time.");
    replace(body,
      figure("Battery", batteryChart(data.battery, days), describeForecast(data.battery.forecast, tz)),
      figure("Deliveries per day", barChart("Deliveries per day", data.daily.deliveries, labels)),
      figure("Deliveries by time of day", barChart("Deliveries by hour of the day", times.by_hour,
        times.by_hour.map((_, hour) => `${String(hour).padStart(2, "0")}:00`), { cls: "bar hour" }), typical),
      figure("Wakes per day", barChart("Wakes per day", data.daily.wakes, labels, { cls: "bar wakes" })),
      figure("Awake time per day", barChart("Seconds awake per day", data.daily.awake_s, labels, { unit: " s", cls: "bar awake" })),
      h("p", { class: "hint" }, `Days in ${data.timezone}.`),
    );
  }

  card.load = async () => {
    try {
      render(await endpoints.deviceHistory(serial, Number(range.value)));
    } catch (error) {
      if (error.status !== 401) replace(body, message("error", error.message));
    }
  };
  range.addEventListener("change", () => card.load());
  return card;
}
