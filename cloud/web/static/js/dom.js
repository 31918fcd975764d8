// A tiny element builder: text always goes in as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** Disable a button while an async action runs; returns the action's result. */
export async function busy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** A message box: kind "error" is announced at once (role=alert), others politely (role=status). */
export function message(kind, text) {
  return h("p", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/**
 * Wrap a loader that live events re-run: of overlapping calls, only the one started last may draw.
 * Answers can arrive out of order (two events in quick succession, or a refresh racing a page turn);
 * the loader gets `current()` and returns quietly when it is false after each await.
 */
export function latestOnly(load) {
  let started = 0;
  return (...args) => {
    const call = ++started;
    return load(() => call === started, ...args);
  };
}
