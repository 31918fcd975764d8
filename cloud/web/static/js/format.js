// Human wording for times, batteries and vision results.

export const LOW_BATTERY_V = 3.5;
export const CRITICAL_BATTERY_V = 3.3;

export function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago", or a date. */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "never";
  const then = new Date(iso).getTime();
  const seconds = Math.round((now - then) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  if (days === 1) return "yesterday";
  if (days < 7) return `${days} days ago`;
  return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function dayKey(date, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
}

/** A moment in the user's time zone: "today at 18:30", "tomorrow at 00:00", or "Mon 3 Mar, 09:00". */
export function localMoment(iso, timeZone = browserTimeZone(), now = new Date()) {
  const date = new Date(iso);
  const time = new Intl.DateTimeFormat(undefined, { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
  const day = dayKey(date, timeZone);
  if (day === dayKey(now, timeZone)) return `today at ${time}`;
  if (day === dayKey(new Date(now.getTime() + 86400000), timeZone)) return `tomorrow at ${time}`;
  const when = new Intl.DateTimeFormat(undefined, { timeZone, weekday: "short", day: "numeric", month: "short" }).format(date);
  return `${when}, ${time}`;
}

/** Date and time for a photo caption. */
export function dateTime(iso, timeZone = browserTimeZone()) {
  return new Intl.DateTimeFormat(undefined, {
    timeZone, year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).format(new Date(iso));
}

export function battery(volts) {
  if (volts === null || volts === undefined) return { text: "battery unknown", low: false, critical: false };
  return { text: `${volts.toFixed(2)} V`, low: volts < LOW_BATTERY_V, critical: volts < CRITICAL_BATTERY_V };
}

// --- the vision result ------------------------------------------------------

const PLURALS = { letter: "letters", package: "packages", parcel: "parcels", magazine: "magazines",
  newspaper: "newspapers", catalog: "catalogs", catalogue: "catalogues", postcard: "postcards",
  flyer: "flyers", envelope: "envelopes", advertisement: "advertisements", box: "boxes" };
const SINGULARS = Object.fromEntries(Object.entries(PLURALS).map(([one, many]) => [many, one]));
const ORDER = ["letter", "envelope", "package", "parcel", "box", "magazine", "newspaper", "catalog", "flyer", "postcard"];

function singular(kind) {
  const key = String(kind).trim().toLowerCase().replace(/[_-]+/g, " ");
  if (SINGULARS[key]) return SINGULARS[key];
  if (key.endsWith("s") && !key.endsWith("ss") && key.length > 3) return key.slice(0, -1);
  return key;
}

function countPhrase(kind, count) {
  if (kind === "other") return count === 1 ? "1 other item" : `${count} other items`;
  if (count === 1) return `1 ${kind}`;
  return `${count} ${PLURALS[kind] || (kind.endsWith("s") ? kind : `${kind}s`)}`;
}

function itemKind(item) {
  if (typeof item === "string") return item;
  if (!item || typeof item !== "object") return null;
  return item.type || item.kind || item.category || item.label || item.name || item.item || null;
}

function itemCount(item) {
  if (item && typeof item === "object") {
    const n = Number(item.count ?? item.quantity ?? item.qty ?? 1);
    return Number.isFinite(n) && n > 0 ? Math.round(n) : 1;
  }
  return 1;
}

/** Counts per kind of item, from `categories` ({"letters": 2}) if it has counts, else from `items`. */
export function mailCounts(analysis) {
  const counts = new Map();
  const add = (kind, n) => {
    if (!kind || !(n > 0)) return;
    const k = singular(kind);
    counts.set(k, (counts.get(k) || 0) + n);
  };
  const categories = analysis.categories && typeof analysis.categories === "object" ? analysis.categories : {};
  for (const [kind, value] of Object.entries(categories)) {
    if (typeof value === "number" && Number.isInteger(value)) add(kind, value);
  }
  if (counts.size === 0) for (const item of analysis.items || []) add(itemKind(item), itemCount(item));
  if (analysis.package_present && !counts.has("package") && !counts.has("parcel") && !counts.has("box")) add("package", 1);
  const rank = (k) => (ORDER.indexOf(k) === -1 ? ORDER.length : ORDER.indexOf(k));
  return [...counts.entries()].sort((a, b) => rank(a[0]) - rank(b[0]));
}

const RETAKE = {
  too_dark: "Photo too dark — retake", dark: "Photo too dark — retake",
  blurry: "Photo blurry — retake", obstructed: "Camera view blocked — retake",
};

function damageNote(analysis) {
  const damage = analysis.package_damage;
  if (!analysis.package_present || !damage || damage === "none") return null;
  return `The package may be damaged (${damage}).`;
}

function joinDetails(...parts) {
  const text = parts.filter(Boolean).join(" ");
  return text || null;
}

/**
 * What a photo shows, for people: {state, text, detail}.
 * state: "mail" | "empty" | "pending" | "failed" | "retake" | "none".
 */
export function describeAnalysis(analysis) {
  if (!analysis) return { state: "none", text: "Not analysed", detail: null };
  if (analysis.status === "queued" || analysis.status === "running") {
    return { state: "pending", text: "Analysing…", detail: null };
  }
  if (analysis.status === "failed") {
    return { state: "failed", text: "Analysis failed — retry", detail: analysis.error || null };
  }
  const quality = analysis.image_quality ? String(analysis.image_quality).toLowerCase() : null;
  if (quality && RETAKE[quality] && analysis.mail_detected !== true) {
    return { state: "retake", text: RETAKE[quality], detail: analysis.description || null };
  }
  if (analysis.mail_detected === true) {
    const phrases = mailCounts(analysis).map(([kind, n]) => countPhrase(kind, n));
    const text = phrases.length ? `You have mail: ${phrases.join(", ")}` : "You have mail";
    return { state: "mail", text, detail: joinDetails(analysis.description, damageNote(analysis)) };
  }
  if (analysis.mail_detected === false) return { state: "empty", text: "Empty", detail: analysis.description || null };
  if (analysis.provider === "offline" && (analysis.description || "").startsWith("Not calibrated")) {
    return { state: "uncalibrated", text: "Not calibrated yet", detail: analysis.description };
  }
  return { state: "none", text: "No result", detail: analysis.description || null };
}

/** The clicks line: "2 of 3 photos left today". */
export function clicksLeft(used, limit) {
  if (limit === null || limit === undefined) return { left: Infinity, text: "Unlimited photos (Premium)" };
  const left = Math.max(0, limit - used);
  return { left, text: `${left} of ${limit} photo${limit === 1 ? "" : "s"} left today` };
}
