// My gateways: how each is doing (last seen, photos waiting, photos held for a claim, dead letters),
// adding one (its token, the command and a systemd unit shown once) and revoking one.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { relativeTime } from "../format.js";
import { confirmDialog } from "./dialogs.js";

const STATES = { online: "Online", offline: "Offline", never_seen: "Not connected yet" };

function statePill(state) {
  return h("span", { class: `pill ${state === "online" ? "pill-online" : "pill-offline"}` }, STATES[state] || state);
}

function waitingText(gateway) {
  if (gateway.backlog === null) return "not reported yet";
  if (gateway.backlog === 0) return "nothing";
  const oldest = Math.round(gateway.backlog_oldest_s);
  return `${gateway.backlog} (oldest ${oldest < 120 ? `${oldest} s` : `${Math.round(oldest / 60)} min`})`;
}

function fact(label, value) {
  return h("li", {}, h("span", { class: "label" }, `${label} `), value);
}

function gatewayCard(gateway, onRevoke) {
  const revoke = h("button", { type: "button", class: "danger small" }, "Revoke");
  revoke.addEventListener("click", () => onRevoke(gateway, revoke));
  const reported = gateway.backlog !== null;
  return h("li", { class: "card gateway-card", dataset: { gatewayId: gateway.gateway_id } },
    h("h2", {}, gateway.name),
    h("p", { class: "meta" }, statePill(gateway.state)),
    h("ul", { class: "facts" },
      fact("Last seen", relativeTime(gateway.last_seen_at)),
      fact("Waiting to upload", waitingText(gateway)),
      reported ? fact("Held until a mailbox is claimed", String(gateway.held)) : null,
      reported ? fact("Dead letters", String(gateway.dead_letters)) : null,
      reported ? fact("Broker", gateway.broker_connected ? "connected" : "not connected") : null,
    ),
    revoke,
  );
}

function copyable(id, label, text) {
  const copy = h("button", { type: "button", class: "secondary small" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy by hand";
    }
  });
  return h("div", { class: "field" },
    h("div", { class: "dialog-head" }, h("h3", { id }, label), copy),
    h("pre", { class: "setup", "aria-labelledby": id }, h("code", {}, text)));
}

/** The new gateway's token and setup: shown this once (the cloud keeps only a hash of the token). */
function setupPanel(created) {
  const s = created.setup;
  return h("section", { class: "card notice", "aria-labelledby": "new-gateway-title" },
    h("h2", { id: "new-gateway-title" }, `Gateway “${created.name}” added`),
    message("info", "Copy these now: the token is shown only once. If it is lost, revoke the gateway and add a new one."),
    copyable("gateway-token-title", "Token", created.gateway_token),
    copyable("gateway-command-title", "Start it on the gateway box", s.command),
    h("p", { class: "hint" }, "To keep it running, save the two files below and run ",
      h("code", {}, "sudo systemctl enable --now mailcam-gateway"), ". Put your broker password in the first one."),
    copyable("gateway-env-title", "/etc/mailcam/gateway.env (chmod 600)", s.env_file),
    copyable("gateway-unit-title", "/etc/systemd/system/mailcam-gateway.service", s.systemd_unit),
  );
}

export async function gatewaysView(app, page, scope) {
  document.title = "Gateways — mailcam";
  const list = h("ul", { class: "cards gateways" });
  const created = h("div", {});
  const feedback = h("div", {});
  const name = h("input", { id: "gateway-name", required: true, maxlength: 100, placeholder: "e.g. Garage Pi" });
  const add = h("button", { type: "submit" }, "Add a gateway");
  const form = h("form", { novalidate: true, class: "inline-form" },
    h("div", { class: "field" }, h("label", { for: "gateway-name" }, "Name"), name), add);

  replace(page,
    h("h1", {}, "Gateways"),
    h("p", { class: "hint" }, "A gateway is the small computer at home (e.g. a Raspberry Pi with Mosquitto) ",
      "that takes your mailboxes' photos and sends them here. It keeps every photo until mailcam has it."),
    created,
    h("section", { class: "card", "aria-labelledby": "add-gateway-title" },
      h("h2", { id: "add-gateway-title" }, "Add a gateway"), form, feedback),
    list,
  );

  async function load() {
    const gateways = await endpoints.gateways();
    if (!scope.alive) return;
    replace(list, gateways.length
      ? gateways.map((g) => gatewayCard(g, revoke))
      : h("li", { class: "muted" }, "No gateway yet: add one, then start it with the command shown."));
  }

  async function revoke(gateway, button) {
    const sure = await confirmDialog({
      title: `Revoke “${gateway.name}”?`,
      text: "Its token stops working at once; photos still waiting on it stay there until you add it again.",
      confirmLabel: "Revoke",
    });
    if (!sure) return;
    await busy(button, async () => {
      try {
        await endpoints.revokeGateway(gateway.gateway_id);
        replace(feedback, message("success", `“${gateway.name}” is revoked.`));
        await load();
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(feedback);
    if (!name.value.trim()) {
      replace(feedback, message("error", "Give the gateway a name."));
      return;
    }
    await busy(add, async () => {
      try {
        const result = await endpoints.addGateway(name.value.trim());
        name.value = "";
        replace(created, setupPanel(result));
        created.querySelector("h2").setAttribute("tabindex", "-1");
        created.querySelector("h2").focus();
        await load();
      } catch (error) {
        if (error.status !== 401) replace(feedback, message("error", error.message));
      }
    });
  });

  await load();
  scope.every(30_000, load); // the gateways report every HOUSEKEEPING_S (30 s)
}
