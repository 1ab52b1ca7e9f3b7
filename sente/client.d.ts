// Types of client.js, the browser client of the sente protocol (PROTOCOL.md, version 1).

export type Transport = "ws" | "ajax";

export interface ConnectOptions {
  /** "auto" (WebSocket, falling back to Ajax when it cannot open), "ws" or "ajax". Default "auto". */
  type?: "auto" | Transport;
  /** The CSRF token the server checks, or a function returning it. */
  csrfToken?: string | (() => string);
  /** Extra query parameters of the handshake and polls. */
  params?: Record<string, string>;
  /**
   * The client id; default: one per tab, kept across reloads in sessionStorage. The client's position
   * (see Client.position) is kept there too, with the id, so that a reload resumes.
   */
  clientId?: string;
  /** Default timeout of request(). Default 10000. */
  requestTimeoutMs?: number;
  /** Idle time before a keep-alive ping. Default 20000. */
  pingIntervalMs?: number;
  /** How long a ping may wait for its pong before reconnecting. Default 5000. */
  pingTimeoutMs?: number;
  /** Reconnect backoff bounds. Defaults 500 and 30000. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  at: number;
}

export interface State {
  type: "auto" | Transport;
  /** The transport in use after the last handshake. */
  transport: Transport | null;
  open: boolean;
  everOpened: boolean;
  /** Present (true) on the change that opened the connection for the first time. */
  firstOpen?: boolean;
  uid: string | null;
  handshakeData: unknown;
  /**
   * True when the last handshake resumed the client past the server's history: pushes made while it
   * was away may be missing, and the application should refetch its state. False otherwise (a
   * reconnect then delivers every push missed, in order, once).
   */
  lost: boolean;
  lastClose: CloseInfo | null;
  /** True once the client will not reconnect (close(), or kicked or replaced by the server). */
  stopped: boolean;
  /** Reconnect attempts since the last open. */
  attempt: number;
}

export class ChskError extends Error {
  readonly code: "closed" | "timeout" | "error";
}

/**
 * The data of the "chsk/handshake" event dispatched on every handshake: [uid, null, handshakeData,
 * firstOpen, lost] (Sente's shape, with lost, as in State, added last).
 */
export type HandshakeEventData = [uid: string, csrf: null, handshakeData: unknown, firstOpen: boolean, lost: boolean];

export class Client {
  readonly clientId: string;
  readonly state: State;
  /**
   * The position after the last batch received, an opaque string the server gave (PROTOCOL.md §6):
   * null until the first handshake, unless the page was reloaded with one kept. It is passed back as
   * the pos query parameter on every WebSocket connect and every Ajax poll, and kept in sessionStorage
   * with the client id.
   */
  readonly position: string | null;
  /** Calls fn on every handshake with its data; returns a function that removes it. */
  on(id: "chsk/handshake", fn: (data: HandshakeEventData, event: ["chsk/handshake", HandshakeEventData]) => void): () => void;
  /** Calls fn for pushed events with id ("*" for every event); returns a function that removes it. */
  on(id: string, fn: (data: unknown, event: [string, unknown?]) => void): () => void;
  /** Calls fn on every state change; returns a function that removes it. */
  onState(fn: (state: State, previous: State) => void): () => void;
  /** Sends an event; false when not open. */
  send(id: string, data?: unknown): boolean;
  /** Sends an event and resolves with the reply; rejects with a ChskError. */
  request<T = unknown>(id: string, data?: unknown, options?: { timeoutMs?: number }): Promise<T>;
  /** Reconnects at once with the same client id. */
  reconnect(): void;
  /** Closes for good. */
  close(): void;
}

export function connect(path: string, options?: ConnectOptions): Client;

/** The wait before reconnect attempt n (1-based), in milliseconds. */
export function backoffMs(n: number, minMs?: number, maxMs?: number): number;
