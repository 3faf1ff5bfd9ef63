// What the dashboard shows, with no DOM in it: item rows keyed by SKU and the alert feed.
// Ordering rule from the protocol: a snapshot row may already hold the effect of later publications,
// so a publication changes a row only if its version is newer (stock by item version, price by price
// version, alert badge by event time). Stock per location keeps a version per location: the events of
// one command share the item's version, and a transfer's two stock_changed each move one location.

const STOCK_ALERTS = new Set([
  "low_stock_detected",
  "out_of_stock",
  "back_in_stock",
  "overstock_detected",
  "stock_level_normal",
]);
const FEED_LIMIT = 300;

const time = (iso) => Date.parse(iso || "") || 0;
const has = (value) => value !== undefined && value !== null;

// An inventory snapshot row carries `prices: [price rows]`, one per currency; the table shows one
// currency per item: the one it already shows, else the first.
export function normalizeRow(raw, currency = null) {
  const onHand = raw.on_hand ?? raw.stock_quantity ?? 0;
  const reserved = raw.reserved ?? raw.reserved_quantity ?? 0;
  const prices = Array.isArray(raw.prices) ? raw.prices : [];
  const price = prices.find((p) => p.currency === currency) || prices[0];
  return {
    sku: raw.sku,
    name: raw.name ?? "",
    category: raw.category ?? null,
    on_hand: onHand,
    reserved,
    available: raw.available ?? onHand - reserved,
    min_stock_level: raw.min_stock_level ?? null,
    max_stock_level: raw.max_stock_level ?? null,
    alert_state: raw.alert_state ?? "ok",
    is_active: raw.is_active ?? true,
    version: raw.version ?? 0,
    locations: normalizeLocations(raw.locations, raw.version ?? 0, time(raw.updated_at)),
    ...(price ? normalizePrice(price) : NO_PRICE),
    alert_at: time(raw.updated_at),
  };
}

// `locations` of a snapshot row or an item view (LocationStockView), as a Map by code in code order;
// each entry is as new as the row it came with.
export function normalizeLocations(list, version, alertAt) {
  const entries = (Array.isArray(list) ? list : []).map((l) => [
    l.location,
    {
      location: l.location,
      on_hand: l.on_hand ?? null,
      reserved: l.reserved ?? null,
      available: l.available ?? null,
      alert_state: l.alert_state ?? "ok",
      min_stock_level: l.min_stock_level ?? null,
      max_stock_level: l.max_stock_level ?? null,
      own_levels: Boolean(l.own_levels),
      version,
      alert_at: alertAt,
    },
  ]);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Map(entries);
}

function locationEntry(row, code) {
  let entry = row.locations.get(code);
  if (!entry) {
    entry = {
      location: code,
      on_hand: null,
      reserved: null,
      available: null,
      alert_state: "ok",
      min_stock_level: row.min_stock_level,
      max_stock_level: row.max_stock_level ?? null,
      own_levels: false,
      version: 0,
      alert_at: 0,
    };
    row.locations = new Map([...row.locations, [code, entry]].sort(([a], [b]) => (a < b ? -1 : 1)));
  }
  return entry;
}

// A price row of the prices channel (or of an inventory row's `prices`): its `version` is the price's.
export function normalizePrice(raw) {
  return {
    currency: raw.currency,
    effective_price: raw.effective_price ?? null,
    margin_pct: raw.margin_pct ?? null,
    margin_state: raw.margin_state ?? null,
    price_version: raw.version ?? null,
  };
}

const NO_PRICE = {
  currency: null,
  effective_price: null,
  margin_pct: null,
  margin_state: null,
  price_version: null,
};

function feedEntry(event) {
  const at = has(event.location) ? ` at ${event.location}` : "";
  let state = event.current ?? null;
  if (event.type === "margin_below_floor") state = "below";
  if (event.type === "margin_recovered") state = "ok";
  if (event.type === "price_change_pending_approval") state = "pending";
  if (event.type === "command_rejected") state = "rejected";
  return {
    id: event.event_id,
    at: event.occurred_at,
    sku: event.sku,
    type: event.type,
    state,
    detail: describe(event) + at,
    location: event.location ?? null,
  };
}

function describe(event) {
  switch (event.type) {
    case "command_rejected":
      return `${event.command_type}: ${event.reason}`;
    case "price_change_pending_approval":
      return `${event.currency} ${event.old_price ?? "—"} → ${event.new_price} waits: ${event.why}`;
    case "margin_below_floor":
    case "margin_recovered":
      return `${event.currency} margin ${event.margin_pct ?? "—"} % (floor ${event.floor_pct} %)`;
    default:
      return has(event.available) ? `available ${event.available} (min ${event.min_stock_level})` : "";
  }
}

export class DashboardState {
  constructor() {
    this.rows = new Map();
    this.feed = [];
    this.seen = new Set();
  }

  // Inventory and prices snapshots hold the same rows; each replaces the fields its channel owns.
  replaceItems(rawRows) {
    const next = new Map();
    for (const raw of rawRows) {
      const old = this.rows.get(raw.sku);
      const row = normalizeRow(raw, old && old.currency);
      // Price fields come from the prices channel too; keep ours if they are newer than the snapshot's.
      const ours = old && has(old.price_version) && old.currency === row.currency;
      if (ours && !(row.price_version >= old.price_version)) Object.assign(row, pickPrice(old));
      next.set(row.sku, row);
    }
    this.rows = next;
  }

  replacePrices(rawRows) {
    const changed = new Set();
    const bySku = new Map();
    for (const raw of rawRows) {
      const list = bySku.get(raw.sku) || [];
      list.push(raw);
      bySku.set(raw.sku, list);
    }
    for (const [sku, list] of bySku) {
      const row = this.rows.get(sku);
      if (!row) continue;
      const price = list.find((p) => p.currency === row.currency) || list[0];
      Object.assign(row, normalizePrice(price));
      changed.add(sku);
    }
    return changed;
  }

  replaceAlerts(rawAlerts) {
    this.feed = rawAlerts.map((a) => ({
      id: `active:${a.kind ?? "stock"}:${a.sku}:${a.currency ?? ""}`,
      at: a.since ?? a.updated_at ?? a.occurred_at ?? null,
      sku: a.sku,
      type: a.type ?? `${a.kind ?? "stock"}_alert`,
      state: a.state ?? a.alert_state ?? a.current ?? null,
      detail: has(a.available)
        ? `available ${a.available}`
        : `${a.currency ?? ""} margin ${a.margin_pct ?? "—"} %`,
    }));
    this.seen = new Set(this.feed.map((e) => e.id));
  }

  // A row read from the HTTP API for an item no snapshot had; the newer version wins, prices stay. Of the
  // same version, it gives a registered item its stock per location (item_registered names none).
  upsertItem(raw) {
    const row = normalizeRow(raw);
    const old = this.rows.get(row.sku);
    if (old && old.version === row.version && old.locations.size === 0 && row.locations.size) {
      old.locations = row.locations;
      return true;
    }
    if (old && old.version >= row.version) return false;
    if (old) Object.assign(row, pickPrice(old));
    this.rows.set(row.sku, row);
    return true;
  }

  // Returns the SKU whose row changed (or null); `missing` when an event names an item we do not have.
  apply(channel, event) {
    if (channel === "alerts") return this.applyAlert(event);
    if (channel === "prices") return this.applyPrice(event);
    return this.applyStock(event);
  }

  applyStock(event) {
    const row = this.rows.get(event.sku);
    if (event.type === "item_registered") {
      if (row && row.version >= event.version) return null;
      // The event does not say where the initial quantity lies: the item view tells (`unplaced`).
      this.rows.set(event.sku, {
        ...normalizeRow({ ...event, reserved: 0 }),
        ...(row ? pickPrice(row) : {}),
        alert_state: row ? row.alert_state : "ok",
      });
      return { sku: event.sku, unplaced: true };
    }
    if (!has(event.version)) return null; // reservations: the stock_changed beside them carries the numbers
    if (!row) return { sku: event.sku, missing: true };
    if (event.type === "stock_changed") return this.applyStockChanged(row, event);
    if (event.version <= row.version) return null;
    row.version = event.version;
    if (event.type === "item_details_updated") {
      for (const key of ["name", "category", "min_stock_level", "max_stock_level"]) {
        if (key in event.changes) row[key] = event.changes[key];
      }
      for (const entry of row.locations.values()) {
        if (!entry.own_levels) {
          entry.min_stock_level = row.min_stock_level;
          entry.max_stock_level = row.max_stock_level;
        }
      }
    } else if (event.type === "item_deactivated" || event.type === "item_reactivated") {
      row.is_active = event.type === "item_reactivated";
    } else if (event.type === "location_levels_set") {
      const entry = locationEntry(row, event.location);
      entry.own_levels = has(event.min_stock_level) || has(event.max_stock_level);
      entry.min_stock_level = event.min_stock_level ?? row.min_stock_level;
      entry.max_stock_level = event.max_stock_level ?? row.max_stock_level;
    }
    return { sku: event.sku };
  }

  // The totals follow the item version; the location's levels follow that location's version, so the
  // second stock_changed of a transfer (same version, other location) still lands.
  applyStockChanged(row, event) {
    let changed = false;
    if (event.version > row.version) {
      row.version = event.version;
      row.on_hand = event.on_hand;
      row.reserved = event.reserved;
      row.available = event.available;
      changed = true;
    }
    if (has(event.location) && has(event.location_on_hand)) {
      const entry = locationEntry(row, event.location);
      if (event.version > entry.version) {
        entry.version = event.version;
        entry.on_hand = event.location_on_hand;
        entry.reserved = event.location_reserved;
        entry.available = event.location_available;
        changed = true;
      }
    }
    return changed ? { sku: event.sku } : null;
  }

  applyPrice(event) {
    if (event.type !== "price_changed") return null;
    const row = this.rows.get(event.sku);
    if (!row) return { sku: event.sku, missing: true };
    if (row.currency && row.currency !== event.currency) return null;
    if (has(row.price_version) && event.version <= row.price_version) return null;
    Object.assign(row, {
      currency: event.currency,
      effective_price: event.new_price,
      margin_pct: event.margin_pct,
      price_version: event.version,
    });
    return { sku: event.sku };
  }

  applyAlert(event) {
    if (this.seen.has(event.event_id)) return null;
    this.seen.add(event.event_id);
    this.feed.unshift(feedEntry(event));
    if (this.feed.length > FEED_LIMIT) {
      for (const gone of this.feed.splice(FEED_LIMIT)) this.seen.delete(gone.id);
    }
    const row = this.rows.get(event.sku);
    if (!row) return { sku: event.sku, feed: true };
    if (STOCK_ALERTS.has(event.type) && has(event.location)) {
      // A per-location alert: that location's badge, never the item's (the SKU-level one is on totals).
      const entry = locationEntry(row, event.location);
      if (time(event.occurred_at) >= entry.alert_at) {
        entry.alert_state = event.current;
        entry.alert_at = time(event.occurred_at);
      }
    } else if (STOCK_ALERTS.has(event.type) && time(event.occurred_at) >= row.alert_at) {
      row.alert_state = event.current;
      row.alert_at = time(event.occurred_at);
    } else if (event.type === "margin_below_floor" && event.currency === row.currency) {
      row.margin_state = "below";
    } else if (event.type === "margin_recovered" && event.currency === row.currency) {
      row.margin_state = "ok";
    }
    return { sku: event.sku, feed: true };
  }

  // Rows that pass the filter, sorted; `text` matches SKU or name, `alert` a state or "alert" (any but ok),
  // `location` the items with stock at that location.
  view({ text = "", alert = "", location = "", sortKey = "sku", descending = false } = {}) {
    const needle = text.trim().toLowerCase();
    const rows = [...this.rows.values()].filter(
      (r) =>
        (!needle || r.sku.toLowerCase().includes(needle) || r.name.toLowerCase().includes(needle)) &&
        (!alert || (alert === "alert" ? r.alert_state !== "ok" : r.alert_state === alert)) &&
        (!location || r.locations.has(location)),
    );
    const numeric = ["on_hand", "reserved", "available", "effective_price", "margin_pct"].includes(sortKey);
    const key = numeric
      ? (r) => (has(r[sortKey]) ? Number(r[sortKey]) : -Infinity)
      : (r) => String(r[sortKey] ?? "");
    rows.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const order = x < y ? -1 : x > y ? 1 : a.sku < b.sku ? -1 : 1;
      return descending ? -order : order;
    });
    return rows;
  }
}

function pickPrice(row) {
  const { currency, effective_price, margin_pct, margin_state, price_version } = row;
  return { currency, effective_price, margin_pct, margin_state, price_version };
}
