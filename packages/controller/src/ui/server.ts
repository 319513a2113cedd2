import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { parseSince } from "../commands/audit.ts";
import { EventHub } from "./events.ts";
import { allowedHosts, formatUiListen, type UiListen } from "./listen.ts";
import { uiVm, vmList, type UiSource } from "./source.ts";
import type { TopologyRenderer } from "./topology.ts";

/** The page and its script and style, read once from ui/assets/ (shipped with the sources, packaging/deb/stage.ts). */
const ASSETS = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui.js": { file: "dashboard.js", type: "text/javascript; charset=utf-8" },
  "/ui.css": { file: "dashboard.css", type: "text/css; charset=utf-8" },
} as const;

/**
 * What every answer carries. The page loads only its own script and style
 * (CSP Level 3: no inline script, no other origin, no framing), nothing is
 * cached (the data is live), and no answer is sniffed into another type.
 */
const COMMON_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
} as const;

/** The audit lines GET /api/vm/NAME/audit sends at most (the newest). */
export const AUDIT_LINE_LIMIT = 200;
/** A VM name in a path: a DNS label (the inventory's VM names are). */
const VM_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** How the dashboard is set up. */
export interface UiServerOptions {
  listen: UiListen;
  source: UiSource;
  /** `--ui-allow-remote`: answer any Host header (a remote name or address); else only loopback names (allowedHosts). */
  allowRemote?: boolean;
  /** The topology picture's renderer (the graph feature's SVG); none: GET /api/topology.svg answers 503. */
  topology?: TopologyRenderer;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * The read-only dashboard of `netfleet serve --ui`: one static page
 * (GET /, /ui.js, /ui.css) and JSON under /api/ — status (`netfleet
 * status`'s rows with health), rollout (lock and last state), topology.svg,
 * vms, vm/NAME (policy per NIC), vm/NAME/audit?since=24h (the audit
 * lines), events (Server-Sent Events, events.ts). It has no write route:
 * every method but GET and HEAD is 405 with `Allow: GET, HEAD`, before
 * anything is read. Without allowRemote a request whose Host header is not
 * a loopback name is 421 (DNS rebinding). No login: it listens on loopback
 * unless the operator says otherwise (listen.ts).
 */
export class UiServer {
  /** Where it listens (the port the kernel gave when 0 was asked). */
  readonly address: UiListen;
  private readonly server: Server;
  private readonly hub: EventHub;

  private constructor(server: Server, address: UiListen, hub: EventHub) {
    this.server = server;
    this.address = address;
    this.hub = hub;
  }

  /** The page's URL. */
  get url(): string {
    return `http://${formatUiListen(this.address)}/`;
  }

  /**
   * Listens on `o.listen`.
   * @throws Error `ui: cannot listen on ADDRESS:PORT: <reason>` (address in use, not local, ...).
   */
  static async start(o: UiServerOptions): Promise<UiServer> {
    const log = o.log ?? (() => {});
    const assets = new Map(Object.entries(ASSETS).map(([path, a]) => [path, { type: a.type, body: readFileSync(new URL(`./assets/${a.file}`, import.meta.url)) }]));
    const hub = new EventHub(o.source, log);
    let hosts = allowedHosts(o.listen);
    const server = createServer((req, res) => {
      handle(req, res, { ...o, hub, assets, hosts }).catch((err: unknown) => {
        log({ event: "ui-error", level: "error", url: req.url, error: (err as Error).message });
        if (!res.headersSent) json(res, 500, { error: (err as Error).message });
        else res.end();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(new Error(`ui: cannot listen on ${formatUiListen(o.listen)}: ${err.code === "EADDRINUSE" ? "address in use" : err.message}`));
      server.once("error", failed);
      server.listen(o.listen.port, o.listen.host, () => {
        server.removeListener("error", failed);
        resolve();
      });
    });
    const bound = server.address();
    const address = { host: o.listen.host, port: typeof bound === "object" && bound ? bound.port : o.listen.port };
    hosts = allowedHosts(address);
    server.unref();
    return new UiServer(server, address, hub);
  }

  /** Ends the event streams, stops listening and closes open connections. */
  async close(): Promise<void> {
    this.hub.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

interface Context extends UiServerOptions {
  hub: EventHub;
  assets: Map<string, { type: string; body: Buffer }>;
  hosts: Set<string>;
}

function json(res: ServerResponse, code: number, value: unknown, head = false): void {
  res.writeHead(code, { ...COMMON_HEADERS, "content-type": "application/json; charset=utf-8" }).end(head ? undefined : `${JSON.stringify(value)}\n`);
}

async function handle(req: IncomingMessage, res: ServerResponse, c: Context): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { ...COMMON_HEADERS, allow: "GET, HEAD", "content-type": "application/json; charset=utf-8" }).end(`${JSON.stringify({ error: "the dashboard is read-only: GET and HEAD only" })}\n`);
    return;
  }
  if (!c.allowRemote && !c.hosts.has((req.headers.host ?? "").toLowerCase())) {
    json(res, 421, { error: "this dashboard answers only to its loopback address (Host header not allowed)" });
    return;
  }
  const head = req.method === "HEAD";
  const url = new URL(req.url ?? "/", "http://ui.invalid");
  const path = url.pathname;
  const asset = c.assets.get(path);
  if (asset) {
    res.writeHead(200, { ...COMMON_HEADERS, "content-type": asset.type }).end(head ? undefined : asset.body);
    return;
  }
  // Browsers ask for it on their own; there is none (an empty answer, not a 404 in the console).
  if (path === "/favicon.ico") return void res.writeHead(204, COMMON_HEADERS).end();
  if (path === "/api/status") return json(res, 200, await c.source.status(), head);
  if (path === "/api/rollout") return json(res, 200, await c.source.rollout(), head);
  if (path === "/api/vms") return json(res, 200, { site: c.source.site, vms: vmList(c.source.inventory) }, head);
  if (path === "/api/events") {
    if (head) return void res.writeHead(200, { ...COMMON_HEADERS, "content-type": "text/event-stream; charset=utf-8" }).end();
    if (!c.hub.add(res)) json(res, 503, { error: "too many dashboards follow this controller; try again later" });
    return;
  }
  if (path === "/api/topology.svg") {
    if (!c.topology) return json(res, 503, { error: "no topology renderer in this build" }, head);
    const rows = (await c.source.status()).hosts;
    const svg = await c.topology(c.source.inventory, rows);
    // Opened on its own, the picture may run nothing and load nothing.
    res.writeHead(200, { ...COMMON_HEADERS, "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'", "content-type": "image/svg+xml; charset=utf-8" }).end(head ? undefined : svg);
    return;
  }
  const vm = /^\/api\/vm\/([^/]+)(\/audit)?$/.exec(path);
  if (vm) {
    const name = decodeURIComponent(vm[1]!);
    if (!VM_NAME.test(name)) return json(res, 400, { error: `not a VM name: ${JSON.stringify(name.slice(0, 80))}` }, head);
    if (!vm[2]) {
      const policy = uiVm(c.source.inventory, name);
      return policy ? json(res, 200, policy, head) : json(res, 404, { error: `no VM named ${name} in the inventory` }, head);
    }
    let since: Date;
    try {
      since = parseSince(url.searchParams.get("since") ?? "24h");
    } catch (err) {
      return json(res, 400, { error: (err as Error).message.replace("--since", "since") }, head);
    }
    const audit = await c.source.audit(name, since, AUDIT_LINE_LIMIT);
    return audit ? json(res, 200, audit, head) : json(res, 404, { error: `no VM named ${name} in the inventory` }, head);
  }
  json(res, 404, { error: `not found: ${path.slice(0, 200)}` }, head);
}
