// The live item table: one <tr> per SKU, kept and updated in place; filter and sort re-order the rows.
import { $, badge, el, formatMoney, formatPct } from "./dom.js";
import { locationSummary } from "./locations.js";

const COLUMNS = [
  "sku",
  "name",
  "on_hand",
  "reserved",
  "available",
  "alert_state",
  "locations",
  "effective_price",
  "margin_pct",
];
const NUMERIC = new Set(["on_hand", "reserved", "available", "effective_price", "margin_pct"]);

export class ItemTable {
  constructor(state) {
    this.state = state;
    this.body = $("#items tbody");
    this.trs = new Map();
    this.truncated = false;
    this.options = { text: "", alert: "", location: "", sortKey: "sku", descending: false };
    this.dirty = new Set();
    this.flashes = new Set();
    this.reorder = true;
    this.frame = 0;
    $("#filter-text").addEventListener("input", (e) => this.set({ text: e.target.value }));
    $("#filter-alert").addEventListener("change", (e) => this.set({ alert: e.target.value }));
    for (const th of document.querySelectorAll("#items th[data-sort]")) {
      const sort = () => {
        const key = th.dataset.sort;
        const descending = this.options.sortKey === key ? !this.options.descending : false;
        this.set({ sortKey: key, descending });
      };
      th.tabIndex = 0; // sortable from the keyboard too
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sort();
        }
      });
    }
  }

  set(options) {
    // The Locations column shows only the filtered location: every row repaints.
    if ("location" in options && options.location !== this.options.location) {
      for (const sku of this.state.rows.keys()) this.dirty.add(sku);
    }
    Object.assign(this.options, options);
    this.reorder = true;
    this.schedule();
  }

  // `flash`: a live change the eye should catch; snapshots repaint quietly.
  changed(sku, flash = true) {
    this.dirty.add(sku);
    if (flash) this.flashes.add(sku);
    // A changed value may move the row or take it in or out of the filter.
    this.reorder = true;
    this.schedule();
  }

  replaced() {
    for (const sku of this.trs.keys()) if (!this.state.rows.has(sku)) this.trs.delete(sku);
    for (const sku of this.state.rows.keys()) this.dirty.add(sku);
    this.reorder = true;
    this.schedule();
  }

  schedule() {
    // One DOM pass per frame however many publications arrive in it.
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    for (const sku of this.dirty) {
      const row = this.state.rows.get(sku);
      if (row) this.fill(row);
    }
    this.dirty = new Set();
    if (this.reorder) {
      this.reorder = false;
      const rows = this.state.view(this.options);
      this.body.replaceChildren(...rows.map((r) => this.trs.get(r.sku) || this.fill(r)));
      // The relay caps a snapshot (INVMON_LIVE_SNAPSHOT_LIMIT): say so rather than pretend it is all.
      const more = this.truncated ? " — more exist than the relay sends in one snapshot" : "";
      $("#items-shown").textContent = `${rows.length} of ${this.state.rows.size} items${more}`;
      for (const th of document.querySelectorAll("#items th[data-sort]")) {
        const active = th.dataset.sort === this.options.sortKey;
        if (active) th.setAttribute("aria-sort", this.options.descending ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
    }
    for (const sku of this.flashes) {
      const tr = this.trs.get(sku);
      if (!tr) continue;
      tr.classList.remove("flash");
      void tr.offsetWidth; // restart the animation
      tr.classList.add("flash");
    }
    this.flashes = new Set();
  }

  fill(row) {
    let tr = this.trs.get(row.sku);
    if (!tr) {
      tr = el("tr", { "data-sku": row.sku });
      for (const column of COLUMNS) {
        tr.append(el("td", { "data-col": column, class: NUMERIC.has(column) ? "num" : null }));
      }
      this.trs.set(row.sku, tr);
    }
    const cells = tr.children;
    cells[0].replaceChildren(el("a", { href: `#/items/${encodeURIComponent(row.sku)}`, text: row.sku }));
    cells[1].textContent = row.name;
    cells[2].textContent = String(row.on_hand);
    cells[3].textContent = String(row.reserved);
    cells[4].textContent = String(row.available);
    cells[5].replaceChildren(badge(row.alert_state));
    cells[6].textContent = locationSummary(row, this.options.location);
    cells[7].textContent = formatMoney(row.effective_price, row.currency);
    cells[8].replaceChildren(
      row.margin_state === "below" ? badge("below") : "",
      row.margin_state === "below" ? " " : "",
      formatPct(row.margin_pct),
    );
    tr.dataset.version = String(row.version);
    return tr;
  }
}
