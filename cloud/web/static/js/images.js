// Capture images need the bearer header, so they are fetched as blobs and shown through object URLs.
// A capture's bytes never change, so its object URL is cached (bounded) until logout.

import { endpoints } from "./api.js";
import { h } from "./dom.js";

const MAX_CACHED = 150;
const cache = new Map(); // key -> Promise<objectURL>

function cached(key, load) {
  if (cache.has(key)) {
    const hit = cache.get(key);
    cache.delete(key); // refresh its place in the LRU order
    cache.set(key, hit);
    return hit;
  }
  const promise = load().then((blob) => URL.createObjectURL(blob));
  promise.catch(() => cache.delete(key));
  cache.set(key, promise);
  while (cache.size > MAX_CACHED) {
    const [oldest, url] = cache.entries().next().value;
    cache.delete(oldest);
    url.then((u) => URL.revokeObjectURL(u), () => {});
  }
  return promise;
}

export const thumbnailUrl = (captureId) => cached(`t:${captureId}`, () => endpoints.thumbnail(captureId));
export const imageUrl = (captureId) => cached(`i:${captureId}`, () => endpoints.image(captureId));

export function forgetImages() {
  for (const url of cache.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
  cache.clear();
}

/** An <img> that fills in once its blob arrives (or says the image is unavailable). */
export function authImage(loadUrl, alt, attrs = {}) {
  const img = h("img", { alt, ...attrs, class: `${attrs.class || ""} loading`.trim(), decoding: "async" });
  loadUrl().then(
    (url) => {
      img.src = url;
      img.classList.remove("loading");
    },
    () => {
      img.classList.remove("loading");
      img.classList.add("broken");
      img.alt = `${alt} (image unavailable)`;
    },
  );
  return img;
}
