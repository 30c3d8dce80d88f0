// The control page's shell: one connection to the gateway shared by every
// page, the navigation between pages (the URL fragment, never a secret), and
// reconnection after a dropped socket.

import { GatewayClient, GatewayError } from "./client.js";
import { $ } from "./dom.js";
import * as connectPage from "./connect.js";
import * as chatPage from "./chat.js";
import * as agentsPage from "./agents.js";
import * as sessionsPage from "./sessions.js";
import * as statusPage from "./status.js";

const PAGES = { connect: connectPage, chat: chatPage, agents: agentsPage, sessions: sessionsPage, gateway: statusPage };
/** Events of the gateway the pages listen to, re-sent by the connection from whichever socket is current. */
const EVENTS = ["agent", "chat", "agents.changed", "shutdown"];
const RETRY_MS = [500, 1000, 2000, 5000, 10000];

/**
 * The page's connection. Events: `state` (`detail`: idle, connecting, open,
 * reconnecting, closed), `open` (after every successful connect, reconnects
 * included), and the gateway's events in `EVENTS`.
 */
class Connection extends EventTarget {
  constructor() {
    super();
    this.client = null;
    this.state = "idle";
    this.target = null;
    this.retry = 0;
    this.timer = null;
  }

  setState(state, note = "") {
    this.state = state;
    const el = $("conn-state");
    el.dataset.state = state;
    el.textContent = {
      idle: "Not connected", connecting: "Connecting…", open: `Connected${note}`,
      reconnecting: `Connection lost; reconnecting${note}`, closed: `Disconnected${note}`,
    }[state];
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  /** Connect to `url` with `auth`; resolves with hello-ok, rejects with the gateway's error. */
  async connect(url, auth) {
    this.stop();
    this.target = { url, auth };
    this.setState("connecting");
    try {
      return await this.attach();
    } catch (e) {
      this.target = null;
      this.setState("idle");
      throw e;
    }
  }

  async attach() {
    const { url, auth } = this.target;
    const client = new GatewayClient(url, auth);
    for (const name of EVENTS) {
      client.addEventListener(name, (e) => this.dispatchEvent(new CustomEvent(name, { detail: e.detail })));
    }
    client.addEventListener("close", (e) => this.dropped(client, e.detail));
    const hello = await client.open();
    this.client = client;
    this.retry = 0;
    this.setState("open", ` as ${hello.auth?.role || "operator"} (${shortScopes(client.scopes)})`);
    this.dispatchEvent(new CustomEvent("open", { detail: hello }));
    return hello;
  }

  dropped(client, { wasOpen, byUs, reason }) {
    if (client !== this.client) return;
    this.client = null;
    if (byUs || !wasOpen || !this.target) {
      this.setState(byUs ? "idle" : "closed", reason ? `: ${reason}` : "");
      return;
    }
    this.reconnect(reason);
  }

  reconnect(reason) {
    const wait = RETRY_MS[Math.min(this.retry, RETRY_MS.length - 1)];
    this.retry += 1;
    this.setState("reconnecting", reason ? ` (${reason})` : "");
    this.timer = setTimeout(async () => {
      if (!this.target) return;
      try {
        await this.attach();
      } catch (e) {
        // A secret that no longer works, or a lock-out, will not heal by retrying.
        if (e instanceof GatewayError && e.details?.code) {
          this.target = null;
          this.setState("closed", `: ${e.message}`);
          connectPage.showError(e);
          go("connect");
        } else {
          this.reconnect(e.message);
        }
      }
    }, wait);
  }

  stop() {
    clearTimeout(this.timer);
    const client = this.client;
    this.client = null;
    this.target = null;
    client?.close();
  }

  /** Forget the connection (the user asked). */
  disconnect() {
    this.stop();
    this.setState("idle");
  }

  get open() {
    return Boolean(this.client);
  }

  /** A WebSocket method call on the current connection. */
  call(method, params) {
    if (!this.client) return Promise.reject(new GatewayError("Not connected"));
    return this.client.call(method, params);
  }

  /** An authenticated HTTP request to the gateway. */
  http(path, options) {
    if (!this.client) return Promise.reject(new GatewayError("Not connected"));
    return this.client.http(path, options);
  }

  allows(scope) {
    return Boolean(this.client?.allows(scope));
  }
}

function shortScopes(scopes) {
  return scopes.map((s) => s.replace(/^operator\./, "")).join(", ") || "no scopes";
}

export const conn = new Connection();
let current = null;

/** Show page `name` (and put it in the URL fragment). */
export function go(name) {
  if (location.hash !== `#${name}`) location.hash = name;
  else route();
}

function route() {
  let name = location.hash.replace(/^#/, "") || (conn.open ? "chat" : "connect");
  if (!PAGES[name]) name = "connect";
  // Until connected every page but Connect would be empty.
  if (name !== "connect" && !conn.open && conn.state !== "connecting" && conn.state !== "reconnecting") {
    connectPage.want(name);
    name = "connect";
  }
  for (const section of document.querySelectorAll("[data-page]")) section.hidden = section.dataset.page !== name;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current && current !== name) PAGES[current].hide?.();
  const changed = current !== name;
  current = name;
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · wasmclaw`;
  // Move focus to the new page's heading, as a screen reader user expects
  // after navigation; the page may then move it on to its first field.
  if (changed) document.querySelector(`[data-page="${name}"] h1`)?.focus?.();
  PAGES[name].show?.();
}

/** The page being shown. */
export function currentPage() {
  return current;
}

function boot() {
  for (const h1 of document.querySelectorAll("[data-page] h1")) h1.tabIndex = -1;
  for (const page of Object.values(PAGES)) page.init(conn);
  conn.addEventListener("open", () => {
    if (current && current !== "connect") PAGES[current].show?.();
  });
  window.addEventListener("hashchange", route);
  route();
  connectPage.resume();
}

boot();
