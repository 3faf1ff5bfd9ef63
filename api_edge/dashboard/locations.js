// Stock by location: the items table's location filter and compact column, and the item page's table.
import { $, badge, el } from "./dom.js";

// "default 6 · WH-EU-1 4": available per location, or only the filtered location's.
export function locationSummary(row, only = "") {
  const entries = [...row.locations.values()].filter((e) => !only || e.location === only);
  if (!entries.length) return "—";
  return entries.map((e) => `${e.location} ${e.available ?? "—"}`).join(" · ");
}

// The <select> of the items table, filled from GET /v1/locations; a code met in the live data that the
// list did not have yet (created since) is added when seen.
export class LocationFilter {
  constructor(api, onChange) {
    this.api = api;
    this.select = $("#filter-location");
    this.known = new Set();
    this.select.addEventListener("change", (e) => onChange(e.target.value));
  }

  async load() {
    try {
      const body = await this.api.get("/v1/locations");
      const list = Array.isArray(body) ? body : body.locations || body.items || [];
      for (const location of list) this.add(location.code, location.name, location.is_active);
    } catch (error) {
      console.warn("could not load the locations", error);
    }
  }

  see(codes) {
    for (const code of codes) if (!this.known.has(code)) this.add(code, "", true);
  }

  add(code, name, active) {
    if (this.known.has(code)) return;
    this.known.add(code);
    const label = `${code}${name && name !== code ? ` — ${name}` : ""}${active === false ? " (inactive)" : ""}`;
    const option = el("option", { value: code, text: label });
    const after = [...this.select.options].find((o) => o.value && o.value > code);
    this.select.insertBefore(option, after || null);
  }
}

// The item page's stock per location: one row per location, repainted from the live state.
export function renderLocationTable(body, row) {
  const entries = row ? [...row.locations.values()] : [];
  body.replaceChildren(
    ...entries.map((e) =>
      el(
        "tr",
        { "data-location": e.location, "data-version": e.version },
        el("td", { "data-col": "location", text: e.location }),
        el("td", { "data-col": "on_hand", class: "num", text: e.on_hand ?? "—" }),
        el("td", { "data-col": "reserved", class: "num", text: e.reserved ?? "—" }),
        el("td", { "data-col": "available", class: "num", text: e.available ?? "—" }),
        el("td", { "data-col": "alert_state" }, badge(e.alert_state)),
        el("td", {
          "data-col": "levels",
          text: `${e.min_stock_level ?? "—"} / ${e.max_stock_level ?? "—"}${e.own_levels ? " (own)" : ""}`,
        }),
      ),
    ),
  );
}
