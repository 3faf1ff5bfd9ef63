// Builds elements from data with textContent only: nothing the server sends is ever parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector) => document.querySelector(selector);

export function badge(state) {
  return el("span", { class: "badge", "data-state": state, text: state });
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

// Money stays the decimal string the API sent (no float rounding); only padding zeros past cents go.
export function formatMoney(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "";
  const text = String(amount).replace(/^(-?\d+\.\d\d\d*?)0+$/, "$1");
  return currency ? `${text} ${currency}` : text;
}

export function formatPct(value) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  return Number.isFinite(number) ? `${number.toFixed(1)} %` : String(value);
}
