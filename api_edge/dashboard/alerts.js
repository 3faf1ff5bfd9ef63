// The alert feed, newest first.
import { $, badge, el, formatTime } from "./dom.js";

export class AlertFeed {
  constructor(state) {
    this.state = state;
    this.list = $("#alert-feed");
    this.frame = 0;
  }

  changed() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    const items = this.state.feed.map((entry) =>
      el(
        "li",
        { "data-type": entry.type, "data-sku": entry.sku, "data-location": entry.location },
        el("time", { datetime: entry.at, text: formatTime(entry.at) }),
        entry.state ? badge(entry.state) : "",
        el("a", { href: `#/items/${encodeURIComponent(entry.sku)}`, text: entry.sku }),
        el("span", { text: entry.type.replaceAll("_", " ") }),
        el("span", { class: "muted", text: entry.detail }),
      ),
    );
    this.list.replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "No alerts." })]));
  }
}
