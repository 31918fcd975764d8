// The live feed: the signed-in user's events pushed by the server (GET /api/events/, server-sent events).
//
// EventSource cannot send an Authorization header, and the login token must not sit in a URL (URLs end up
// in logs), so each connection opens with a single-use ticket from POST /api/events/ticket/. For the same
// reason EventSource's own reconnect (same URL, spent ticket) cannot work: after a drop we open a new stream
// with a new ticket and `last_event_id`, and the server replays what we missed. `reset` (our last event is
// no longer kept) tells the pages to reload everything.

import { auth, endpoints } from "./api.js";

const RETRY_MAX_MS = 30000;
const handlers = new Set();
let source = null;
let lastId = null;
let failures = 0;
let retry = null;
let wanted = false;

/** Call `handler(event)` for each live event ({id, kind, device_serial, at, data}); returns the unsubscribe. */
export function onLiveEvent(handler) {
  handlers.add(handler);
  return () => handlers.delete(handler);
}

/** Keep a stream open while signed in (idempotent). */
export function startLive() {
  wanted = true;
  if (!source && !retry) connect();
}

/** Close the stream and forget where it stood (logging out). */
export function stopLive() {
  wanted = false;
  clearTimeout(retry);
  retry = null;
  if (source) source.close();
  source = null;
  lastId = null;
}

function dispatch(event) {
  for (const handler of [...handlers]) {
    try {
      handler(event);
    } catch (error) {
      console.error("live event handler failed", error);
    }
  }
}

async function connect() {
  retry = null;
  if (!wanted || !auth.token) return;
  let ticket;
  try {
    ticket = (await endpoints.streamTicket()).ticket;
  } catch (error) {
    if (error.status !== 401) reconnectLater(); // 401: the session ended; the app sends the user to log in
    return;
  }
  if (!wanted) return;
  const query = new URLSearchParams({ ticket });
  if (lastId !== null) query.set("last_event_id", lastId);
  const stream = new EventSource(`/api/events/?${query}`);
  source = stream;
  stream.onopen = () => {
    failures = 0;
    document.documentElement.dataset.live = "open";
  };
  const fresh = lastId === null; // nothing to replay from: a change since the page loaded would be lost
  stream.onmessage = (message) => {
    if (message.lastEventId) lastId = message.lastEventId;
    const event = JSON.parse(message.data);
    if (event.kind === "open") {
      if (fresh) dispatch({ kind: "reset" }); // subscribed now: pages reload once and miss nothing
      return;
    }
    dispatch(event);
  };
  stream.onerror = () => {
    if (source !== stream) return;
    stream.close(); // its own retry would reuse the spent ticket
    source = null;
    document.documentElement.dataset.live = "closed";
    reconnectLater();
  };
}

function reconnectLater() {
  if (!wanted || retry) return;
  failures += 1;
  const delay = Math.min(RETRY_MAX_MS, 500 * 2 ** Math.min(failures, 6)) * (0.8 + Math.random() * 0.4);
  retry = setTimeout(connect, delay);
}

// Back online (or the tab shown again after the browser dropped the stream): reconnect now, not after the backoff.
window.addEventListener("online", () => {
  if (wanted && !source) {
    clearTimeout(retry);
    connect();
  }
});
