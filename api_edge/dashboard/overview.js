// The items page's strip: items per alert state and a commands/s sparkline of the last ten minutes.
// Polled while the items page is shown; the live channels carry items, not rates.
import { $, badge, el } from "./dom.js";
import { sparkline } from "./chart.js";

const POLL_MS = 5000;

export class OverviewStrip {
  constructor(api) {
    this.api = api;
    this.timer = 0;
    this.active = false;
  }

  show() {
    if (this.active) return;
    this.active = true;
    this.load();
  }

  hide() {
    this.active = false;
    clearTimeout(this.timer);
  }

  async load() {
    clearTimeout(this.timer);
    try {
      this.render(await this.api.get("/v1/overview"));
    } catch (error) {
      $("#overview-rate").textContent = `Overview unavailable: ${error.message}`;
    }
    if (this.active) this.timer = setTimeout(() => this.load(), POLL_MS);
  }

  render(overview) {
    $("#overview-states").replaceChildren(
      ...Object.entries(overview.items_by_alert_state).map(([state, count]) =>
        el("span", { class: "stat", "data-state": state }, badge(state), el("b", { text: count })),
      ),
    );
    const rates = overview.commands.map((b) => b.per_second);
    const latest = rates.length ? rates[rates.length - 1] : 0;
    const minutes = Math.round(overview.window_s / 60);
    const peak = Math.max(0, ...rates);
    $("#overview-spark").dataset.peak = String(peak);
    $("#overview-spark").replaceChildren(
      sparkline(rates, { label: `Commands per second, last ${minutes} minutes` }),
    );
    $("#overview-rate").replaceChildren(
      el("b", { "data-rate": latest, text: latest.toFixed(1) }),
      ` commands/s (last ${overview.bucket_s} s), peak ${peak.toFixed(1)} in ${minutes} min`,
    );
  }
}
