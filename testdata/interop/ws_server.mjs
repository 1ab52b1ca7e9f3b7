// An npm `ws` server for interop_test.go (TestInteropNodeServer).
//
//   node ws_server.mjs
//
// It listens on 127.0.0.1 on a free port, prints {"event":"listening","port":N},
// then one JSON line for each thing a connection does. It runs until its
// standard input ends (the Go test closes it), or 60 s at most.
// What a connection does depends on its path:
//   /echo                 echo every message as it came.
//   /close?code=C&reason=R  send the text "hello", then close with C and R.
//   /ping                 ping with the payload "node-srv-ping"; on the pong,
//                         send the text "pong:" + payload; echo messages.
//   /big                  send a binary message of 1 MiB + 1 byte.
// The subprotocol v2 is chosen when the client offers it.
import { createHash } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { bigPayload, emit } from './inbox.mjs';

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

const deadline = setTimeout(() => {
  emit({ event: 'error', message: 'ws_server.mjs ran for too long' });
  process.exit(3);
}, 60000);

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  handleProtocols: (protocols) => (protocols.has('v2') ? 'v2' : false),
});

wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
wss.on('error', (err) => emit({ event: 'error', message: String(err) }));

wss.on('connection', (ws, req) => {
  const u = new URL(req.url, 'http://localhost');
  const path = u.pathname;
  emit({ event: 'connection', path, protocol: ws.protocol });

  ws.on('error', (err) => emit({ event: 'wserror', path, message: String(err) }));
  ws.on('message', (data, isBinary) => {
    emit({ event: 'message', path, binary: isBinary, len: data.length, sha256: sha256(data) });
    if (path === '/echo' || path === '/ping') ws.send(data, { binary: isBinary });
  });
  ws.on('ping', (data) => emit({ event: 'ping', path, data: data.toString() }));
  ws.on('pong', (data) => {
    emit({ event: 'pong', path, data: data.toString() });
    if (path === '/ping') ws.send('pong:' + data.toString());
  });
  ws.on('close', (code, reason) => emit({ event: 'close', path, code, reason: reason.toString() }));

  switch (path) {
    case '/close':
      ws.send('hello');
      ws.close(Number(u.searchParams.get('code')), u.searchParams.get('reason') ?? '');
      break;
    case '/ping':
      ws.ping('node-srv-ping');
      break;
    case '/big':
      ws.send(bigPayload((1 << 20) + 1), { binary: true });
      break;
  }
});

process.stdin.on('end', () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => clearTimeout(deadline));
});
process.stdin.resume();
