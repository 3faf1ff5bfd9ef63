// The connection indicator in the header; `data-state` is the machine-readable state.
import { $ } from "./dom.js";

const LABELS = {
  offline: "offline",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  recovered: "live · recovered",
  reloaded: "live · reloaded",
};

export function showConnection(state, detail) {
  const node = $("#conn");
  node.dataset.state = state;
  const at = state === "recovered" || state === "reloaded" ? ` ${new Date().toLocaleTimeString()}` : "";
  node.textContent = `${LABELS[state] || state}${at}`;
  node.title = detail || "";
}
