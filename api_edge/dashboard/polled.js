// A view that reads one API path every few seconds while it is shown: the figures that no live channel
// carries (rates, lag, backlog). Subclasses give the path, render the answer and show a failure.
export class PolledView {
  constructor(api, path, pollMs = 5000) {
    this.api = api;
    this.path = path;
    this.pollMs = pollMs;
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
      const answer = await this.api.get(this.path);
      if (this.active) this.render(answer);
    } catch (error) {
      this.failed(error);
    }
    if (this.active) this.timer = setTimeout(() => this.load(), this.pollMs);
  }
}
