// The existing HTTP API with the session's bearer token. Errors carry the problem+json detail.
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
  }
}

export class Api {
  constructor(base, session, onUnauthorized) {
    this.base = base;
    this.session = session;
    this.onUnauthorized = onUnauthorized;
  }

  async login(username, password) {
    const body = new URLSearchParams({ username, password });
    const response = await fetch(`${this.base}/v1/auth/token`, { method: "POST", body });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    this.session.token = data.access_token;
  }

  async refresh() {
    const data = await this.post("/v1/auth/refresh");
    this.session.token = data.access_token;
    return data.access_token;
  }

  async request(path, { method = "GET", body } = {}) {
    const headers = { Authorization: `Bearer ${this.session.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (response.status === 401) this.onUnauthorized();
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path) {
    return this.request(path);
  }

  post(path, body) {
    return this.request(path, { method: "POST", body });
  }
}

export const enc = encodeURIComponent;
