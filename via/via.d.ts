// Types for via.js, the browser client of the via protocol (PROTOCOL.md).

export const SUBPROTOCOL: "via.v1";

/** Why a call failed: a reply whose status is not 200 ("status", with
 * status and body), no reply in time ("timeout"), or no connection, or the
 * connection dropped before the reply ("closed"). The message is "timeout",
 * "closed" or "status <n>". */
export class ViaError extends Error {
  readonly name: "ViaError";
  readonly kind: "status" | "timeout" | "closed";
  readonly status?: number;
  readonly body?: unknown;
}

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export interface ViaOptions {
  /** Bounds each invoke and subscribe, in ms. Default 10000. */
  requestTimeout?: number;
  /** Bounds of the reconnect backoff, in ms. Defaults 50 and 5000. */
  reconnectMin?: number;
  reconnectMax?: number;
  /** Runs on every reconnect (not the first connection), before the
   * subscriptions are sent again: re-authenticate here (invoke works). If it
   * throws, the connection is dropped and tried again later. */
  onReconnect?: (via: Via) => void | Promise<void>;
  /** The WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
}

export interface CallOptions {
  /** Application headers, passed to the handler unchanged. */
  headers?: Record<string, string>;
  /** invoke only: ms before rejecting with "timeout". */
  timeout?: number;
}

export interface EventInfo {
  id: string;
  headers: Record<string, string>;
  wantsReply: boolean;
}

/** Diagnostics: bad messages, unknown events and subscriptions, sequence
 * gaps, failed connects and hooks. */
export interface ViaDiagnostic {
  kind: string;
  [k: string]: unknown;
}

export interface SubscribeOptions<T> {
  /** The value until the publisher's first one arrives. Default null. */
  default?: T;
  /** Called when the publisher refuses the subscription (which then ends)
   * or does not answer in time (it carries on). */
  onError?: (err: ViaError) => void;
}

export class Subscription<T = unknown> {
  readonly via: Via;
  readonly key: string;
  readonly id: string;
  readonly args: unknown;
  /** The current value. */
  readonly value: T;
  /** Why it ended, or null. */
  readonly error: ViaError | null;
  readonly closed: boolean;
  /** Resolves when the publisher first accepts; rejects if it refuses. */
  readonly ready: Promise<void>;
  /** Ends the subscription and tells the publisher. */
  unsubscribe(): void;
}

export class Via {
  /** url: ws://, wss:// or a path on the page's host (default "/via"). */
  constructor(url?: string, options?: ViaOptions);
  readonly url: string;
  readonly status: Status;

  on(name: "status", fn: (status: Status) => void): () => void;
  on(name: "open", fn: () => void): () => void;
  on(name: "close", fn: (ev: { code: number; reason: string }) => void): () => void;
  on(name: "error", fn: (d: ViaDiagnostic) => void): () => void;

  /** Fire and forget; false when not connected (nothing is queued). */
  dispatch(id: string, body?: unknown, opts?: CallOptions): boolean;
  /** Resolves with the reply's body on 200; rejects with a ViaError. */
  invoke<T = unknown>(id: string, body?: unknown, opts?: CallOptions): Promise<T>;
  /** Handles event id sent by the server; the result is the reply. */
  handle(id: string, fn: ((body: any, info: EventInfo) => unknown) | null): void;
  /** Subscribes to id with args; onValue gets each new value, in order.
   * Lives across reconnects until unsubscribe(). */
  subscribe<T = unknown>(id: string, args: unknown, onValue: (value: T) => void, opts?: SubscribeOptions<T>): Subscription<T>;
  /** Closes with 1000 and stops reconnecting. */
  close(): void;
}

/** The wait before reconnect attempt n: in [b/2, b), b = min·2^(n−1) capped
 * at max. */
export function backoff(n: number, min?: number, max?: number, jitter?: number): number;

/** Applies an RFC 7386 merge patch, returning a new value. */
export function mergePatch(target: unknown, patch: unknown): unknown;
