import { DashboardState } from "/state.js";

export default async function () {
  const st = new DashboardState();
  st.replaceItems([
    { sku: "A", name: "Alpha", on_hand: 10, reserved: 2, available: 8, alert_state: "ok", version: 5,
      updated_at: "2026-11-27T08:00:00Z",
      prices: [{ sku: "A", currency: "EUR", effective_price: "9.90", margin_pct: "30.0", version: 3 },
               { sku: "A", currency: "USD", effective_price: "10.90", margin_pct: "31.0", version: 7 }] },
    { sku: "B", name: "Beta", on_hand: 1, reserved: 0, alert_state: "low", version: 1 },
  ]);
  const out = {};
  const stock = (version, on_hand) => ({ type: "stock_changed", sku: "A", version, on_hand, reserved: 2,
                                         available: on_hand - 2, delta: 0, event_id: `s${version}` });
  out.old = st.apply("inventory", stock(5, 99));
  out.afterOld = st.rows.get("A").on_hand;
  out.fresh = st.apply("inventory", stock(6, 12));
  out.afterFresh = [st.rows.get("A").on_hand, st.rows.get("A").available, st.rows.get("A").version];
  out.unknown = st.apply("inventory", { ...stock(1, 3), sku: "NEW" });
  const price = (version, currency, new_price) => ({ type: "price_changed", sku: "A", currency, version, new_price, margin_pct: "12.5" });
  out.oldPrice = st.apply("prices", price(3, "EUR", "1.00"));
  out.otherCurrency = st.apply("prices", price(9, "USD", "2.00"));
  out.newPrice = st.apply("prices", price(4, "EUR", "11.90"));
  out.price = [st.rows.get("A").effective_price, st.rows.get("A").margin_pct];
  const alert = (id, at, current) => ({ type: current === "ok" ? "stock_level_normal" : "low_stock_detected",
    event_id: id, sku: "A", occurred_at: at, previous: "ok", current, available: 1, min_stock_level: 2 });
  st.apply("alerts", alert("a1", "2026-11-27T07:59:00Z", "low"));   // older than the snapshot row
  out.stale = st.rows.get("A").alert_state;
  st.apply("alerts", alert("a2", "2026-11-27T08:01:00Z", "low"));
  out.alerted = st.rows.get("A").alert_state;
  out.dup = st.apply("alerts", alert("a2", "2026-11-27T08:01:00Z", "low"));
  out.feed = st.feed.map((e) => e.id);
  // A new inventory snapshot older than the price we applied keeps our price.
  st.replaceItems([{ sku: "A", name: "Alpha", on_hand: 12, reserved: 2, version: 6,
                     prices: [{ sku: "A", currency: "EUR", effective_price: "9.90", version: 3 }] }]);
  out.keptPrice = st.rows.get("A").effective_price;
  // A prices snapshot replaces the price of the currency shown.
  st.replacePrices([{ sku: "A", currency: "USD", effective_price: "1.00", version: 9 },
                    { sku: "A", currency: "EUR", effective_price: "12.90", margin_pct: "40.0", version: 5 }]);
  out.snapPrice = [st.rows.get("A").currency, st.rows.get("A").effective_price, st.rows.get("A").price_version];
  out.rows = [...st.rows.keys()];
  return out;
}
