// A scripted npm `ws` client for interop_test.go (TestInteropNodeClient).
//
//   node ws_client.mjs URL SCENARIO
//
// It prints what it sees as JSON lines, one object per line, each with an
// "event" field; a failure prints {"event":"error"} and exits non-zero.
// Scenarios:
//   exchange     echo text, UTF-8 text, binary, empty and 1 MiB messages, ping
//                with a payload and check the pong, wait for a server ping,
//                then close with 4000 "client bye". It offers the subprotocols
//                v1 and v2.
//   await-close  send "ready", then print every message until the server
//                closes, and the close.
//   too-big      send a binary message of 1 MiB + 1 byte and print the close.
import { createHash } from 'node:crypto';
import WebSocket from 'ws';
import { Inbox, bigPayload, emit } from './inbox.mjs';

const [url, scenario] = process.argv.slice(2);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

const deadline = setTimeout(() => {
  emit({ event: 'error', message: 'ws_client.mjs timed out' });
  process.exit(3);
}, 20000);

// ws fails a handshake that offered subprotocols when the server picks none,
// so only the exchange, whose server speaks v2, offers any.
const ws = new WebSocket(url, scenario === 'exchange' ? ['v1', 'v2'] : []);
const inbox = new Inbox().attach(ws);
ws.on('error', (err) => emit({ event: 'wserror', message: String(err) }));

async function exchange() {
  const cases = [
    ['text', 'hello'],
    ['utf8', 'héllo wörld ✓ 🌍'],
    ['empty-text', ''],
    ['binary', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['empty-binary', Buffer.alloc(0)],
    ['big-binary', bigPayload(1 << 20)],
    ['big-text', 'a'.repeat(1 << 20)],
  ];
  for (const [name, payload] of cases) {
    const binary = Buffer.isBuffer(payload);
    ws.send(payload, { binary });
    const { kind, value } = await inbox.next('message', 'close');
    if (kind !== 'message') throw new Error(`closed while waiting for the echo of ${name}: ${JSON.stringify(value)}`);
    const want = Buffer.from(payload);
    emit({
      event: 'echo',
      name,
      ok: value.isBinary === binary && want.equals(value.data),
      binary: value.isBinary,
      len: value.data.length,
      sha256: sha256(value.data),
    });
  }

  ws.ping('node-ping');
  const pong = await inbox.next('pong', 'close');
  if (pong.kind !== 'pong') throw new Error('closed while waiting for the pong');
  emit({ event: 'pong', data: pong.value.toString() });

  // The server pings every few milliseconds; ws answers by itself.
  const ping = await inbox.next('ping', 'close');
  if (ping.kind !== 'ping') throw new Error('closed while waiting for a server ping');
  emit({ event: 'ping', data: ping.value.toString() });

  ws.close(4000, 'client bye');
  const { value } = await inbox.next('close');
  emit({ event: 'close', ...value });
}

async function awaitClose() {
  ws.send('ready');
  for (;;) {
    const { kind, value } = await inbox.next('message', 'close');
    if (kind === 'close') {
      emit({ event: 'close', ...value });
      return;
    }
    emit({ event: 'message', binary: value.isBinary, data: value.data.toString() });
  }
}

async function tooBig() {
  ws.send(bigPayload((1 << 20) + 1), { binary: true });
  const { value } = await inbox.next('close');
  emit({ event: 'close', ...value });
}

const scenarios = { exchange, 'await-close': awaitClose, 'too-big': tooBig };

try {
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  emit({ event: 'open', protocol: ws.protocol });
  await scenarios[scenario]();
} catch (err) {
  emit({ event: 'error', message: String(err && err.stack ? err.stack : err) });
  process.exitCode = 1;
  ws.terminate();
} finally {
  clearTimeout(deadline);
}
