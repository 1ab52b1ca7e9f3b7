// A queue of a WebSocket's events that scripts can await in order, with no
// dependency but node itself.

export class Inbox {
  #events = [];
  #waiters = [];

  // push records an event of a kind ('message', 'ping', 'pong', 'close').
  push(kind, value) {
    const i = this.#waiters.findIndex((w) => w.kinds.includes(kind));
    if (i >= 0) {
      const [w] = this.#waiters.splice(i, 1);
      w.resolve({ kind, value });
      return;
    }
    this.#events.push({ kind, value });
  }

  // next resolves with the oldest event whose kind is one of kinds.
  next(...kinds) {
    const i = this.#events.findIndex((e) => kinds.includes(e.kind));
    if (i >= 0) {
      return Promise.resolve(this.#events.splice(i, 1)[0]);
    }
    return new Promise((resolve) => this.#waiters.push({ kinds, resolve }));
  }

  // attach feeds a ws WebSocket's events into the inbox.
  attach(ws) {
    ws.on('message', (data, isBinary) => this.push('message', { data, isBinary }));
    ws.on('ping', (data) => this.push('ping', data));
    ws.on('pong', (data) => this.push('pong', data));
    ws.on('close', (code, reason) => this.push('close', { code, reason: reason.toString() }));
    return this;
  }
}

// emit prints one JSON line on stdout for the Go test to read.
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// bigPayload is the 1 MiB pattern interop_test.go also builds: byte i is i % 251.
export function bigPayload(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}
