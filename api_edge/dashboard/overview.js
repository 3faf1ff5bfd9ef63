// The items page's strip: items per alert state and a commands/s sparkline of the last ten minutes.
// Polled while the items page is shown; the live channels carry items, not rates.
import { $, badge, el } from "./dom.js";
import { sparkline } from "./chart.js";
import { PolledView } from "./polled.js";

export class OverviewStrip extends PolledView {
  constructor(api) {
    super(api, "/v1/overview");
  }

  failed(error) {
    $("#overview-rate").textContent = `Overview unavailable: ${error.message}`;
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
