// The access token lives in sessionStorage only (one tab, gone when it closes), never in a URL.
const KEY = "invmon.token";

export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

export class Session {
  constructor(storage = sessionStorage) {
    this.storage = storage;
  }

  get token() {
    const token = this.storage.getItem(KEY);
    // The server checks the signature; here the claims only hide buttons and catch a stale token early.
    const c = token && claims(token);
    if (!c || typeof c.exp !== "number" || c.exp * 1000 <= Date.now()) return null;
    return token;
  }

  set token(value) {
    if (value) this.storage.setItem(KEY, value);
    else this.storage.removeItem(KEY);
  }

  get subject() {
    const token = this.token;
    return token ? String(claims(token).sub) : "";
  }

  get expiresAt() {
    const token = this.token;
    return token ? claims(token).exp * 1000 : 0;
  }

  has(role) {
    const token = this.token;
    const roles = (token && claims(token).roles) || [];
    return roles.includes("admin") || roles.includes(role);
  }
}
