// One item: its facts, stock per location, the stock and price charts and the stock ledger. Reloaded from
// the API when a live event names it, so the page never has to merge ledger rows itself; the stock per
// location is repainted from the live state at once (the dashboard's state applies stock_changed and
// per-location alerts), the API's item only standing in while the live state has no row for it.
import { enc } from "./api.js";
import { $, badge, el, formatMoney, formatPct, formatTime } from "./dom.js";
import { priceChart, stockChart } from "./chart.js";
import { renderLocationTable } from "./locations.js";
import { normalizeRow } from "./state.js";

const LEDGER_PAGE = 1000;
const LEDGER_PAGES = 10;

export class ItemView {
  constructor(api, state) {
    this.api = api;
    this.state = state;
    this.fallback = null; // the API's row, while the live state has none
    this.sku = null;
    this.currency = null;
    this.timer = 0;
    this.generation = 0;
    $("#item-currency").addEventListener("change", (e) => {
      this.currency = e.target.value;
      this.load();
    });
  }

  show(sku) {
    if (sku !== this.sku) {
      this.sku = sku;
      this.currency = null;
      $("#item-title").textContent = sku;
      $("#item-facts").replaceChildren();
      $("#item-locations tbody").replaceChildren();
      this.fallback = null;
      $("#item-chart").replaceChildren();
      $("#stock-chart").replaceChildren();
      $("#ledger tbody").replaceChildren();
    }
    this.renderLocations();
    return this.load();
  }

  hide() {
    clearTimeout(this.timer);
    this.sku = null;
    this.generation++; // a load still in flight must not paint a hidden view
  }

  changed(sku) {
    if (!this.sku || sku !== this.sku) return;
    this.renderLocations();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), 150); // a command's events arrive together: load once
  }

  async load() {
    const sku = this.sku;
    if (!sku) return;
    const generation = ++this.generation;
    try {
      const [item, prices, ledger] = await Promise.all([
        this.api.get(`/v1/items/${enc(sku)}`),
        this.api.get(`/v1/items/${enc(sku)}/prices`),
        this.ledger(sku),
      ]);
      const currencies = prices.prices.map((p) => p.currency);
      if (!currencies.includes(this.currency)) this.currency = currencies[0] || null;
      const history = this.currency
        ? await this.api.get(`/v1/items/${enc(sku)}/prices/${enc(this.currency)}/history?limit=1000`)
        : { entries: [] };
      if (generation !== this.generation) return; // a newer load started meanwhile
      this.render(item, prices.prices, history.entries, ledger);
    } catch (error) {
      if (generation === this.generation) $("#item-title").textContent = `${sku}: ${error.message}`;
    }
  }

  async ledger(sku) {
    const entries = [];
    let after = 0;
    for (let page = 0; page < LEDGER_PAGES; page++) {
      const body = await this.api.get(`/v1/items/${enc(sku)}/ledger?after=${after}&limit=${LEDGER_PAGE}`);
      entries.push(...body.entries);
      if (body.next_after === null) break;
      after = body.next_after;
    }
    return entries;
  }

  renderLocations() {
    const row = this.state.rows.get(this.sku) || this.fallback;
    renderLocationTable($("#item-locations tbody"), row);
  }

  render(item, prices, history, ledger) {
    this.fallback = normalizeRow(item);
    this.renderLocations();
    $("#item-title").replaceChildren(`${item.sku} — ${item.name} `, badge(item.alert_state));
    const facts = [
      ["On hand", item.on_hand],
      ["Reserved", item.reserved],
      ["Available", item.available],
      ["Min / max", `${item.min_stock_level} / ${item.max_stock_level ?? "—"}`],
      ["Category", item.category ?? "—"],
      ["Active", item.is_active ? "yes" : "no"],
      ["Version", item.version],
      ["Updated", formatTime(item.updated_at)],
    ];
    for (const p of prices) {
      facts.push([`Price ${p.currency}`, formatMoney(p.effective_price, p.currency)]);
      facts.push([`Margin ${p.currency}`, `${formatPct(p.margin_pct)} (${p.margin_state})`]);
    }
    $("#item-facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: v })]),
    );
    $("#item-currency").replaceChildren(
      ...prices.map((p) =>
        el("option", { value: p.currency, selected: p.currency === this.currency, text: p.currency }),
      ),
    );
    const stock = $("#stock-chart");
    stock.replaceChildren(stockChart(ledger, stock.clientWidth));
    const chart = $("#item-chart");
    const points = history.map((h) => ({ at: h.created_at, price: h.new_price }));
    chart.replaceChildren(priceChart(points, chart.clientWidth));
    $("#ledger tbody").replaceChildren(
      ...ledger
        .slice()
        .reverse()
        .map((e) =>
          el(
            "tr",
            { "data-ledger-id": e.id },
            el("td", { text: e.id }),
            el("td", { text: formatTime(e.created_at) }),
            el("td", { text: e.location ?? "" }),
            el("td", { class: "num", text: signed(e.delta) }),
            el("td", { class: "num", text: signed(e.reserved_delta) }),
            el("td", { text: e.reason }),
            el("td", { text: e.actor }),
            el("td", { class: "num", text: e.on_hand_after }),
            el("td", { class: "num", text: e.reserved_after }),
          ),
        ),
    );
  }
}

const signed = (n) => (n > 0 ? `+${n}` : String(n));
