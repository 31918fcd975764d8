// The cloud's JSON API with the user's bearer token (kept in localStorage).
// Every failure becomes an ApiError carrying the server's {error, detail}.

const TOKEN_KEY = "mailcam.token";

export class ApiError extends Error {
  constructor(status, body) {
    super(describeError(body, status));
    this.name = "ApiError";
    this.status = status;
    this.code = body && body.error ? body.error : `http_${status}`;
    this.body = body || {};
  }
}

const FIELD_NAMES = { email: "Email", password: "Password", name: "Name", claim_code: "Claim code", timezone: "Time zone" };

function describeError(body, status) {
  if (!body || typeof body !== "object") return `The server answered ${status}.`;
  let text = body.detail || body.error || `The server answered ${status}.`;
  if (Array.isArray(body.problems) && body.problems.length) {
    const parts = body.problems.map((p) => {
      const field = (p.loc || []).filter((x) => x !== "body" && x !== "query").join(".");
      return field ? `${FIELD_NAMES[field] || field}: ${p.msg}` : p.msg;
    });
    text = `${capitalise(text)} — ${parts.join("; ")}`;
  }
  return capitalise(text);
}

function capitalise(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}

export const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    localStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
  },
};

let unauthorizedHandler = () => {};

/** Called when the API rejects our token (expired or revoked): the app sends the user to log in. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

function buildUrl(path, query) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url.pathname + url.search;
}

/** One request; resolves to {status, data} (data: parsed JSON, a Blob, or null for 204). */
export async function call(method, path, { json, query, as = "json", anonymous = false } = {}) {
  const headers = { Accept: as === "blob" ? "image/jpeg" : "application/json" };
  const token = anonymous ? null : auth.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(buildUrl(path, query), {
      method,
      headers,
      body: json !== undefined ? JSON.stringify(json) : undefined,
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { error: "network_error", detail: "Can't reach mailcam. Check your connection and try again." });
  }
  if (!response.ok) {
    let body;
    try {
      body = await response.json();
    } catch {
      body = { error: `http_${response.status}`, detail: response.statusText || `The server answered ${response.status}.` };
    }
    const error = new ApiError(response.status, body);
    if (response.status === 401 && token) {
      auth.clear();
      unauthorizedHandler(error);
    }
    throw error;
  }
  if (response.status === 204) return { status: 204, data: null };
  const data = as === "blob" ? await response.blob() : await response.json();
  return { status: response.status, data };
}

export const api = {
  get: async (path, query) => (await call("GET", path, { query })).data,
  post: async (path, json) => (await call("POST", path, { json })).data,
  patch: async (path, json) => (await call("PATCH", path, { json })).data,
  put: async (path, json) => (await call("PUT", path, { json })).data,
  del: async (path) => (await call("DELETE", path)).data,
  blob: async (path) => (await call("GET", path, { as: "blob" })).data,
};

const enc = encodeURIComponent;

// The endpoints the dashboard uses, named once.
export const endpoints = {
  signup: (body) => call("POST", "/api/users/", { json: body, anonymous: true }),
  login: (email, password) => call("POST", "/api/auth/token/", { json: { email, password }, anonymous: true }),
  logout: () => api.del("/api/auth/token/"),
  me: () => api.get("/api/users/me/"),
  updateMe: (body) => api.patch("/api/users/me/", body),
  devices: () => api.get("/api/devices/"),
  device: (serial) => api.get(`/api/devices/${enc(serial)}/`),
  claim: (claimCode, name) => api.post("/api/devices/claim/", { claim_code: claimCode, name: name || null }),
  status: (serial) => api.get("/api/device/status/", { device_serial: serial }),
  trigger: (serial) => call("POST", "/api/device/trigger/", { json: { device_serial: serial } }),
  triggers: (serial) => api.get(`/api/devices/${enc(serial)}/triggers/`),
  cancelTrigger: (triggerId) => api.post(`/api/device/trigger/${enc(triggerId)}/cancel/`),
  captures: (serial, cursor, limit) => api.get(`/api/devices/${enc(serial)}/captures/`, { cursor, limit }),
  capture: (captureId) => api.get(`/api/captures/${enc(captureId)}`),
  deleteCapture: (captureId) => api.del(`/api/captures/${enc(captureId)}`),
  thumbnail: (captureId) => api.blob(`/api/captures/${enc(captureId)}/thumbnail`),
  image: (captureId) => api.blob(`/api/captures/${enc(captureId)}/image`),
  reanalyse: (captureId) => api.post(`/api/captures/${enc(captureId)}/reanalyse`),
  deviceSettings: (serial) => api.get(`/api/devices/${enc(serial)}/settings`),
  saveDeviceSettings: (serial, settings) => api.put(`/api/devices/${enc(serial)}/settings`, { settings }),
  deviceFirmware: (serial) => api.get(`/api/devices/${enc(serial)}/firmware`),
  deviceHistory: (serial, days) => api.get(`/api/devices/${enc(serial)}/history`, { days }),
  setReference: (captureId) => api.post(`/api/captures/${enc(captureId)}/reference`),
  usage: (month) => api.get("/api/usage", { month }),
  preferences: () => api.get("/api/notifications/preferences"),
  savePreferences: (body) => api.put("/api/notifications/preferences", body),
  sendConfirmationCode: (channel) => api.post(`/api/notifications/recipients/${enc(channel)}/code`),
  confirmRecipient: (channel, code) => api.post(`/api/notifications/recipients/${enc(channel)}/confirm`, { code }),
  notifications: (limit) => api.get("/api/notifications/", { limit }),
  apiKeys: () => api.get("/api/keys/"),
  createApiKey: (name, scope) => api.post("/api/keys/", { name, scope }),
  revokeApiKey: (id) => api.del(`/api/keys/${enc(id)}`),
  billing: () => api.get("/api/billing/"),
  checkout: (plan) => api.post("/api/billing/checkout/", { plan }),
  billingPortal: () => api.post("/api/billing/portal/"),
  gateways: () => api.get("/api/gateways/"),
  addGateway: (name) => api.post("/api/gateways/", { name }),
  revokeGateway: (id) => api.del(`/api/gateways/${enc(id)}/`),
  setInstallerAccess: (serial, allowed) => api.patch(`/api/devices/${enc(serial)}/`, { installer_access: allowed }),
  streamTicket: () => api.post("/api/events/ticket/"),
};
