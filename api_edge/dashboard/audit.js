// The admin audit trail (admins only; the edge enforces it too): newest first, filtered by actor or
// action, older pages on demand (the API's keyset cursor).
import { $, el, formatTime } from "./dom.js";

const PAGE = 50;

export class AuditView {
  constructor(api) {
    this.api = api;
    this.body = $("#audit tbody");
    this.cursor = null;
    this.loading = false;
    $("#audit-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      this.show();
    });
    $("#audit-more").addEventListener("click", () => this.load(true));
  }

  show() {
    this.cursor = null;
    return this.load(false);
  }

  query(more) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    for (const name of ["actor", "action"]) {
      const value = $(`#audit-${name}`).value.trim();
      if (value) params.set(name, value);
    }
    if (more && this.cursor) params.set("cursor", this.cursor);
    return `/v1/admin/audit?${params}`;
  }

  async load(more) {
    if (this.loading) return;
    this.loading = true;
    try {
      const page = await this.api.get(this.query(more));
      this.cursor = page.next_cursor;
      const rows = page.items.map((entry) => this.row(entry));
      if (more) this.body.append(...rows);
      else {
        const none = el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No admin actions recorded." }));
        this.body.replaceChildren(...(rows.length ? rows : [none]));
      }
      $("#audit-note").textContent = "";
      $("#audit-more").hidden = !this.cursor;
    } catch (error) {
      $("#audit-note").textContent = `Could not load the audit trail: ${error.message}`;
    } finally {
      this.loading = false;
    }
  }

  row(entry) {
    const details = Object.keys(entry.details).length ? JSON.stringify(entry.details) : "";
    return el(
      "tr",
      { "data-audit-id": entry.id, "data-action": entry.action },
      el("td", { text: formatTime(entry.at) }),
      el("td", { text: entry.actor }),
      el("td", { text: entry.action }),
      el("td", { text: entry.target }),
      el("td", {}, el("code", { text: details })),
      el("td", { text: entry.client }),
    );
  }
}
