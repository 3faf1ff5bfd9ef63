// Pending price approvals. Everyone may see the queue; approve/reject only with the pricing role (the
// edge enforces it too: the buttons are a convenience, not the check).
import { enc } from "./api.js";
import { $, el, formatMoney, formatTime } from "./dom.js";

export class Approvals {
  constructor(api, session) {
    this.api = api;
    this.session = session;
    this.body = $("#approvals tbody");
    this.loading = null;
    this.again = false;
  }

  // Coalesces bursts of price events into at most one reload in flight and one queued.
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
    return this.loading;
  }

  async load() {
    let changes;
    try {
      changes = await this.api.get("/v1/price-changes?status=pending&limit=500");
    } catch (error) {
      $("#approvals-note").textContent = `Could not load approvals: ${error.message}`;
      return;
    }
    const canDecide = this.session.has("pricing");
    $("#approvals-note").textContent = canDecide ? "" : "Read only: deciding needs the pricing role.";
    $("#approvals-count").textContent = changes.length ? String(changes.length) : "";
    const rows = changes.map((c) =>
      el(
        "tr",
        { "data-change-id": c.change_id, "data-sku": c.sku },
        el("td", {}, el("a", { href: `#/items/${enc(c.sku)}`, text: c.sku })),
        el("td", { text: c.currency }),
        el("td", { class: "num", text: formatMoney(c.discount_price ?? c.selling_price, c.currency) }),
        el("td", { text: c.why }),
        el("td", { text: c.requested_by }),
        el("td", { text: formatTime(c.requested_at) }),
        el("td", {}, ...(canDecide ? this.buttons(c) : [])),
      ),
    );
    const none = el("tr", {}, el("td", { colspan: 7, class: "muted", text: "Nothing waits for approval." }));
    this.body.replaceChildren(...(rows.length ? rows : [none]));
  }

  buttons(change) {
    const decide = async (verdict, event) => {
      const row = event.target.closest("tr");
      for (const button of row.querySelectorAll("button")) button.disabled = true;
      try {
        const path = `/v1/items/${enc(change.sku)}/price-changes/${enc(change.change_id)}/${verdict}`;
        await this.api.post(`${path}?wait=5`, {});
      } catch (error) {
        $("#approvals-note").textContent = `${verdict} failed: ${error.message}`;
      }
      await this.refresh();
    };
    const button = (verdict, label) =>
      el("button", { type: "button", class: verdict, text: label, onclick: (e) => decide(verdict, e) });
    return [button("approve", "Approve"), " ", button("reject", "Reject")];
  }
}
