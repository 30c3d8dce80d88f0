// A client of the gateway's WebSocket protocol (docs/WIRE.md §4) and its
// HTTP API, as the page uses them. The secret goes only into the `connect`
// frame and into `Authorization` headers: never into a URL.

import { uuid } from "./dom.js";

/** What the page tells the gateway about itself in `connect`. */
const CLIENT = { id: "wasmclaw-control-ui", version: "1", mode: "webchat" };
const PROTOCOL = 4;

/** An error the gateway reported (`res` with `ok: false`), or a transport failure. */
export class GatewayError extends Error {
  constructor(message, { code = null, details = null, retryable = false } = {}) {
    super(message);
    this.code = code;
    this.details = details;
    this.retryable = retryable;
  }

  /** Milliseconds until a locked-out client may try again, if this is a lock-out. */
  get retryAfterMs() {
    return this.details?.code === "AUTH_RATE_LIMITED" ? this.details.retryAfterMs ?? null : null;
  }
}

/** `http://host:port/prefix` → `ws://host:port/prefix` (https → wss). */
export function socketUrl(url) {
  const u = new URL(url);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.hash = "";
  u.search = "";
  return u.toString();
}

/**
 * One authenticated connection. Events: `open` (after hello-ok), `close`
 * (`detail: {code, reason, wasOpen}`) and one per gateway event name
 * (`agent`, `chat`, `agents.changed`, `tick`, `shutdown`) with the payload.
 */
export class GatewayClient extends EventTarget {
  /** `url`: the gateway's http(s) URL; `auth`: `{token}` or `{password}` or `{}`. */
  constructor(url, auth) {
    super();
    this.url = url;
    this.auth = auth;
    this.hello = null;
    this.ws = null;
    this.nextId = 0;
    this.pending = new Map();
    this.closedByUs = false;
  }

  /** The scopes `hello-ok` granted. */
  get scopes() {
    return this.hello?.auth?.scopes || [];
  }

  /** True when the connection may call methods that need `scope`. */
  allows(scope) {
    const order = ["operator.read", "operator.write", "operator.admin"];
    const need = order.indexOf(scope);
    return this.scopes.some((s) => order.indexOf(s) >= need);
  }

  /** Open the socket and authenticate; resolves with `hello-ok`, rejects with a GatewayError. */
  open() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e) => { if (!settled) { settled = true; reject(e); } };
      let ws;
      try {
        ws = new WebSocket(socketUrl(this.url));
      } catch (e) {
        fail(new GatewayError(`Not a gateway URL: ${e.message}`));
        return;
      }
      this.ws = ws;
      ws.addEventListener("message", (msg) => {
        let frame;
        try { frame = JSON.parse(msg.data); } catch { return; }
        if (frame.type === "event" && frame.event === "connect.challenge" && !this.hello) {
          this.request("connect", this.connectParams()).then((hello) => {
            this.hello = hello;
            settled = true;
            resolve(hello);
            this.dispatchEvent(new CustomEvent("open", { detail: hello }));
          }, fail);
          return;
        }
        this.receive(frame);
      });
      ws.addEventListener("close", (e) => {
        const wasOpen = Boolean(this.hello);
        for (const { reject: r } of this.pending.values()) r(new GatewayError("The connection closed"));
        this.pending.clear();
        if (!wasOpen) {
          fail(new GatewayError(e.reason || `Could not connect to the gateway (close ${e.code})`));
        }
        this.hello = null;
        this.dispatchEvent(new CustomEvent("close", {
          detail: { code: e.code, reason: e.reason, wasOpen, byUs: this.closedByUs },
        }));
      });
    });
  }

  connectParams() {
    const platform = navigator.userAgentData?.platform || navigator.platform || "browser";
    return {
      minProtocol: PROTOCOL, maxProtocol: PROTOCOL,
      client: { ...CLIENT, platform, instanceId: uuid() },
      role: "operator",
      auth: this.auth,
    };
  }

  receive(frame) {
    if (frame.type === "res") {
      const waiting = this.pending.get(frame.id);
      if (!waiting) return;
      // `agent` answers twice; the page only uses methods that answer once.
      this.pending.delete(frame.id);
      if (frame.ok) waiting.resolve(frame.payload);
      else {
        const e = frame.error || {};
        waiting.reject(new GatewayError(e.message || "request failed", e));
      }
    } else if (frame.type === "event") {
      this.dispatchEvent(new CustomEvent(frame.event, { detail: frame.payload }));
    }
  }

  /** Send one request; resolves with its payload. */
  request(method, params) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new GatewayError("Not connected"));
    }
    this.nextId += 1;
    const id = `${this.nextId}:${uuid()}`;
    const frame = { type: "req", id, method };
    if (params !== undefined) frame.params = params;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify(frame));
    });
  }

  /** A method call after `connect`. */
  call(method, params) {
    return this.request(method, params);
  }

  /** An HTTP request to the gateway with the credential as a bearer token; resolves with parsed JSON. */
  async http(path, { method = "GET", body, headers = {} } = {}) {
    const secret = this.auth.token ?? this.auth.password;
    const h = { ...headers };
    if (secret) h.Authorization = `Bearer ${secret}`;
    let res;
    try {
      res = await fetch(new URL(path, this.url), { method, body, headers: h, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new GatewayError(`The gateway could not be reached: ${e.message}`);
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!res.ok) {
      const message = json?.error?.message || text || `${res.status} ${res.statusText}`;
      const err = new GatewayError(message, { code: json?.error?.code || null });
      err.status = res.status;
      throw err;
    }
    return json;
  }

  /** Close for good (no reconnect). */
  close() {
    this.closedByUs = true;
    this.ws?.close(1000, "bye");
  }
}
