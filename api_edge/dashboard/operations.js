// The admins' operations page: consumer lag, outbox backlog, dead letters by reason, failing deliveries.
// Refreshed every few seconds while shown; the edge allows it to admins only.
import { $, el, formatTime } from "./dom.js";
import { PolledView } from "./polled.js";

export class OperationsView extends PolledView {
  constructor(api) {
    super(api, "/v1/admin/operations");
  }

  failed(error) {
    $("#ops-note").textContent = `Could not load the figures: ${error.message}`;
  }

  render(ops) {
    $("#ops-note").textContent = ops.lag_error || `As of ${formatTime(ops.generated_at)}`;
    const none = (cols, text) => el("tr", {}, el("td", { colspan: cols, class: "muted", text }));
    const lag = ops.consumer_lag.map((p) =>
      el(
        "tr",
        { "data-group": p.group, "data-partition": p.partition, class: p.lag > 0 ? "behind" : "" },
        el("td", { text: p.group }),
        el("td", { text: p.topic }),
        el("td", { class: "num", text: p.partition }),
        el("td", { class: "num", text: p.committed ?? "—" }),
        el("td", { class: "num", text: p.end }),
        el("td", { class: "num", "data-lag": p.lag, text: p.lag }),
      ),
    );
    $("#ops-lag tbody").replaceChildren(...(lag.length ? lag : [none(6, "No consumer groups.")]));

    const age = ops.outbox.oldest_age_s;
    $("#ops-outbox").replaceChildren(
      el("dt", { text: "Unpublished" }),
      el("dd", { "data-fact": "unpublished", text: ops.outbox.unpublished }),
      el("dt", { text: "Oldest" }),
      el("dd", { "data-fact": "oldest", text: age === null ? "—" : `${age.toFixed(1)} s` }),
    );

    const dead = Object.entries(ops.dead_letters_by_reason).map(([reason, count]) =>
      el(
        "tr",
        { "data-reason": reason },
        el("td", { text: reason }),
        el("td", { class: "num", text: count }),
      ),
    );
    $("#ops-dlq tbody").replaceChildren(...(dead.length ? dead : [none(2, "No dead letters.")]));

    const failing = ops.failing_deliveries.map((d) =>
      el(
        "tr",
        { "data-subscription": d.subscription },
        el("td", { text: d.channel }),
        el("td", { text: d.target }),
        el("td", { class: "num", text: d.attempts }),
        el("td", { text: d.last_error ?? "" }),
        el("td", { text: d.disabled ? "disabled" : formatTime(d.next_attempt_at) }),
      ),
    );
    $("#ops-failing tbody").replaceChildren(
      ...(failing.length ? failing : [none(5, "No failing deliveries.")]),
    );
  }
}
