// Wiring: session, API, live client, state and views; the hash route picks the view.
import { Api } from "./api.js";
import { AlertFeed } from "./alerts.js";
import { Approvals } from "./approvals.js";
import { AuditView } from "./audit.js";
import { $ } from "./dom.js";
import { showConnection } from "./indicator.js";
import { ItemView } from "./item.js";
import { LiveClient } from "./live-client.js";
import { LocationFilter } from "./locations.js";
import { OperationsView } from "./operations.js";
import { OverviewStrip } from "./overview.js";
import { Session } from "./session.js";
import { DashboardState } from "./state.js";
import { ItemTable } from "./table.js";

const APPROVAL_EVENTS = new Set([
  "price_change_pending_approval",
  "price_change_approved",
  "price_change_rejected",
]);
const VIEWS = {
  "#/alerts": "alerts",
  "#/approvals": "approvals",
  "#/audit": "audit",
  "#/operations": "operations",
};
const ADMIN_VIEWS = new Set(["audit", "operations"]);
const has = (value) => value !== undefined && value !== null;

const config = await (await fetch("config.json")).json();
const session = new Session();
const api = new Api(config.api_base, session, () => logout("Your session has ended; log in again."));
const state = new DashboardState();
const table = new ItemTable(state);
const feed = new AlertFeed(state);
const approvals = new Approvals(api, session);
const item = new ItemView(api, state);
const locationFilter = new LocationFilter(api, (location) => table.set({ location }));
const audit = new AuditView(api);
const overview = new OverviewStrip(api);
const operations = new OperationsView(api);
let live = null;
let renewal = 0;
const RENEW_LEAD_MS = 60000;

// Renew the token a minute before it expires, for the API calls and the open live connection alike.
function scheduleRenewal() {
  clearTimeout(renewal);
  const delay = Math.max(5000, session.expiresAt - Date.now() - RENEW_LEAD_MS);
  renewal = setTimeout(async () => {
    try {
      const token = await api.refresh();
      if (live) live.updateToken(token);
      scheduleRenewal();
    } catch (error) {
      if (session.token) renewal = setTimeout(scheduleRenewal, 5000); // a blip: try again shortly
    }
  }, delay);
}

function onSnapshot(channel, rows, truncated) {
  if (channel === "inventory") {
    state.replaceItems(rows);
    table.truncated = truncated;
    table.replaced();
    for (const row of state.rows.values()) locationFilter.see(row.locations.keys());
    item.changed(item.sku);
  } else if (channel === "prices") {
    for (const sku of state.replacePrices(rows)) table.changed(sku, false);
  } else if (channel === "alerts") {
    state.replaceAlerts(rows);
    feed.changed();
    approvals.refresh(); // the queue may have moved while we could not vouch for the feed
  }
}

function onPub(channel, event) {
  const result = state.apply(channel, event);
  if (APPROVAL_EVENTS.has(event.type)) approvals.refresh();
  item.changed(event.sku);
  if (has(event.location)) locationFilter.see([event.location]);
  if (!result) return;
  if (result.feed) feed.changed();
  if (result.missing || result.unplaced) fetchRow(event.sku);
  if (!result.missing && state.rows.has(result.sku)) table.changed(result.sku);
}

async function fetchRow(sku) {
  // Only if an event names an item no snapshot had (e.g. while a resubscription was in flight), or a new
  // item whose stock per location the event does not give.
  try {
    if (state.upsertItem(await api.get(`/v1/items/${encodeURIComponent(sku)}`))) table.changed(sku);
  } catch (error) {
    console.warn("could not load", sku, error);
  }
}

function route() {
  if (!session.token) return;
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/items\/(.+)$/);
  let name = match ? "item" : VIEWS[hash] || "items";
  if (ADMIN_VIEWS.has(name) && !session.has("admin")) name = "items"; // the API would answer 403 anyway
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === hash);
  }
  if (name === "item") item.show(decodeURIComponent(match[1]));
  else item.hide();
  if (name === "alerts") feed.render();
  if (name === "approvals") approvals.refresh();
  if (name === "audit") audit.show();
  if (name === "items") overview.show();
  else overview.hide();
  if (name === "operations") operations.show();
  else operations.hide();
}

function start() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = session.subject;
  $("#nav-audit").hidden = !session.has("admin");
  $("#nav-operations").hidden = !session.has("admin");
  live = new LiveClient({
    url: config.live_url,
    token: () => session.token,
    // A hot SKU repaints its row at most four times a second; alerts and prices are never coalesced.
    channels: [{ name: "inventory", coalesceMs: 250 }, { name: "prices" }, { name: "alerts" }],
    handlers: {
      status: showConnection,
      snapshot: onSnapshot,
      pub: onPub,
      authFailed: () => logout("Your session has ended; log in again."),
    },
  });
  live.start();
  locationFilter.load();
  scheduleRenewal();
  approvals.refresh();
  route();
}

function logout(message = "") {
  clearTimeout(renewal);
  if (live) live.stop();
  live = null;
  session.token = null;
  overview.hide();
  operations.hide();
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = message;
  $("#login").hidden = false;
  showConnection("offline");
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("#login-error").textContent = "";
  try {
    await api.login(String(form.get("username")), String(form.get("password")));
  } catch (error) {
    $("#login-error").textContent = error.status === 401 ? "Wrong user or password." : error.message;
    return;
  }
  event.target.reset();
  start();
});
$("#logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", route);

if (session.token) start();
else logout();
