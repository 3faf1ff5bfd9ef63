import { DashboardState } from "/state.js";
import { locationSummary } from "/locations.js";

// Stock per location in the dashboard's state: a transfer's two stock_changed share the item version,
// a per-location alert is that location's badge only, the location filter keeps items stocked there.
export default async function () {
  const st = new DashboardState();
  const loc = (location, on_hand, extra = {}) => ({ location, on_hand, reserved: 0, available: on_hand,
    alert_state: "ok", min_stock_level: 2, max_stock_level: null, own_levels: false, ...extra });
  st.replaceItems([
    { sku: "A", name: "Alpha", on_hand: 10, reserved: 0, available: 10, alert_state: "ok", version: 4,
      min_stock_level: 2, updated_at: "2026-12-07T08:00:00Z", locations: [loc("default", 10)] },
    { sku: "B", name: "Beta", on_hand: 3, reserved: 0, alert_state: "ok", version: 1,
      locations: [loc("default", 1), loc("WH", 2, { own_levels: true, min_stock_level: 5 })] },
  ]);
  const out = {};
  const places = (sku) => [...st.rows.get(sku).locations.values()].map((e) => [e.location, e.on_hand, e.version]);
  const change = (version, location, on_hand, total = 10) => ({ type: "stock_changed", sku: "A", version,
    location, location_on_hand: on_hand, location_reserved: 0, location_available: on_hand,
    on_hand: total, reserved: 0, available: total, delta: 0, event_id: `c${version}${location}` });
  // A transfer of 4 from default to WH: two events of version 5.
  out.first = st.apply("inventory", change(5, "default", 6));
  out.second = st.apply("inventory", change(5, "WH", 4));
  out.afterTransfer = places("A");
  out.replayed = st.apply("inventory", change(5, "WH", 99));  // a duplicate of the second
  out.stale = st.apply("inventory", change(4, "default", 99)); // older than the snapshot
  out.afterStale = places("A");
  out.totals = [st.rows.get("A").on_hand, st.rows.get("A").version];
  out.summary = locationSummary(st.rows.get("A"));
  out.summaryWH = locationSummary(st.rows.get("A"), "WH");
  out.summaryNone = locationSummary(st.rows.get("A"), "STORE");
  // Old events (before locations) change the totals only.
  out.old = st.apply("inventory", { type: "stock_changed", sku: "A", version: 6, on_hand: 11, reserved: 0,
                                    available: 11, delta: 1, event_id: "old" });
  out.afterOld = [st.rows.get("A").on_hand, places("A")];
  const alert = (id, at, location, current) => ({ type: "low_stock_detected", event_id: id, sku: "A",
    occurred_at: at, previous: "ok", current, available: 1, min_stock_level: 2, location });
  st.apply("alerts", alert("l1", "2026-12-07T08:01:00Z", "WH", "low"));
  out.afterLocationAlert = [st.rows.get("A").alert_state, st.rows.get("A").locations.get("WH").alert_state];
  st.apply("alerts", alert("l2", "2026-12-07T08:02:00Z", null, "out"));
  out.afterItemAlert = [st.rows.get("A").alert_state, st.rows.get("A").locations.get("WH").alert_state];
  out.feed = st.feed.map((e) => e.detail);
  st.apply("inventory", { type: "location_levels_set", sku: "A", version: 7, location: "WH",
                          min_stock_level: 3, max_stock_level: null, event_id: "lv" });
  const wh = st.rows.get("A").locations.get("WH");
  out.levels = [wh.min_stock_level, wh.max_stock_level, wh.own_levels];
  st.apply("inventory", { type: "item_details_updated", sku: "A", version: 8, changes: { min_stock_level: 1 },
                          event_id: "d" });
  const dflt = st.rows.get("A").locations.get("default");
  out.followLevels = [dflt.min_stock_level, st.rows.get("A").locations.get("WH").min_stock_level];
  out.registeredResult = st.apply("inventory", { type: "item_registered", sku: "C", name: "Gamma", on_hand: 7,
                                                 min_stock_level: 1, version: 1, event_id: "r" });
  out.unplaced = places("C");
  // The item view (same version) tells where the initial quantity lies.
  out.placed = st.upsertItem({ sku: "C", name: "Gamma", on_hand: 7, reserved: 0, version: 1,
                               locations: [loc("STORE", 7)] });
  out.registered = places("C");
  out.placedAgain = st.upsertItem({ sku: "C", name: "Gamma", on_hand: 7, reserved: 0, version: 1,
                                    locations: [loc("default", 7)] });
  const skus = (opts) => st.view(opts).map((r) => r.sku);
  out.atWH = skus({ location: "WH" });
  out.atDefault = skus({ location: "default" });
  out.atStore = skus({ location: "STORE" });
  return out;
}
