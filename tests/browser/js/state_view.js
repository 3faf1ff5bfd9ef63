import { DashboardState } from "/state.js";

export default async function () {
  const st = new DashboardState();
  st.replaceItems([
    { sku: "MUG-1", name: "Blue mug", on_hand: 5, reserved: 0, alert_state: "ok", version: 1, prices: [{ currency: "EUR", effective_price: "9.50", version: 1 }] },
    { sku: "MUG-2", name: "Red mug", on_hand: 1, reserved: 0, alert_state: "low", version: 1, prices: [{ currency: "EUR", effective_price: "10.00", version: 1 }] },
    { sku: "LAMP", name: "Desk lamp", on_hand: 0, reserved: 0, alert_state: "out", version: 1 },
  ]);
  const skus = (opts) => st.view(opts).map((r) => r.sku);
  return {
    all: skus({}),
    text: skus({ text: "mug" }),
    name: skus({ text: "desk" }),
    alerts: skus({ alert: "alert" }),
    low: skus({ alert: "low" }),
    byAvailableDesc: skus({ sortKey: "available", descending: true }),
    byPrice: skus({ sortKey: "effective_price" }),
  };
}
