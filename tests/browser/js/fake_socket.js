// A WebSocket stand-in the test drives by hand: open it, feed it frames, kill it with a close code.
export class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close() {
    this.readyState = 3;
  }

  open() {
    this.readyState = 1;
    this.onopen();
  }

  recv(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }

  die(code, reason) {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

export async function until(check) {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!check()) throw new Error("condition not met");
}
