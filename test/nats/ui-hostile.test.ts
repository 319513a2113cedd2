/**
 * The dashboard shows what agents and the stores say as text, never as
 * markup (issue 17 point 2's page, in a real headless Chromium: Debian's
 * /usr/bin/chromium through playwright-core). An agent's failure comment, a
 * warning, a rollout error, an audit line and the topology picture carry
 * script payloads; the page must show them literally and run none of them.
 * Positive control: the same payloads put into a page as HTML (no CSP) do
 * run (window.pwned is set), so the payloads are live.
 * The server is the real UiServer in this process on 127.0.0.1 (a port the kernel picks) with a
 * fixture source (no NATS needed for what is tested: the page's rendering).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { UiServer } from "../../packages/controller/src/ui/server.ts";
import type { UiSource } from "../../packages/controller/src/ui/source.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
/** Each sets window.pwned when it runs. */
const PAYLOADS = {
  comment: `<img src=x onerror="window.pwned='comment'">`,
  warning: `<script>window.pwned='warning'</script>`,
  error: `"><svg onload="window.pwned='error'">`,
  proto: `<iframe srcdoc="<script>parent.pwned='proto'</script>"></iframe>`,
};
const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="50" onload="window.pwned='svg-onload'"><script>window.pwned='svg-script'</script><foreignObject width="100" height="20"><iframe xmlns="http://www.w3.org/1999/xhtml" srcdoc="&lt;script&gt;parent.pwned='fo'&lt;/script&gt;"></iframe></foreignObject><a href="javascript:window.pwned='href'"><text x="5" y="20">hv1</text></a></svg>`;

const inventory = loadInventory(join(REPO, "inventories/lab"));
const now = new Date().toISOString();
const row = {
  host: "hosta", inventory: true, enrolled: true, state: "approved", reason: null, lastSeen: now,
  desired: { revision: 2, hash: "h2" }, applied: { revision: 2, hash: "h2", rolledBack: false, at: now }, drift: false,
  summary: { ok: 1, changed: 0, failed: 1 }, failures: [{ id: "nft[netfleet]", comment: PAYLOADS.comment }],
  corrective: { count: 0, last: null, changes: [], at: null }, warnings: [{ id: "ovs-port[x]", message: PAYLOADS.warning }], agent: null, health: "failed",
};
const source: UiSource = {
  site: "lab",
  inventory,
  status: async () => ({ site: "lab", at: now, hosts: [row] as never, exitCode: 1 }),
  rollout: async () => ({
    lock: null,
    state: { rolloutId: "r1", owner: "t", phase: "partial", startedAt: now, updatedAt: now, waves: [["hosta"]], completed: [], failed: ["hosta"], hosts: { hosta: { role: "vmhost", target: "h2", previous: null, basedOn: 0, status: "failed", revision: 2, error: PAYLOADS.error } } },
  }),
  audit: async (vm, since) => ({
    vm, since: since.toISOString(), nics: [], older: 0, lost: 0, invalid: [],
    records: [{ time: now, verdict: "drop", direction: "out", proto: PAYLOADS.proto, src: "10.81.0.11", dst: "198.51.100.99", network: "secure", host: "backend" }] as never,
  }),
  watch: async () => () => {},
};

let server: UiServer;
let browser: BrowserContext;
const profile = mkdtempSync(join(tmpdir(), "nf-ui-hostile-"));

beforeAll(async () => {
  server = await UiServer.start({ listen: { host: "127.0.0.1", port: 0 }, source, topology: async () => SVG });
  // A new empty profile (--user-data-dir) for this run.
  browser = await chromium.launchPersistentContext(profile, { executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, timeout: 60_000 });
}, 90_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  await server?.close();
  rmSync(profile, { recursive: true, force: true });
});

describe("hostile strings on the dashboard (real Chromium)", () => {
  it("positive control: the payloads run when put into a page as HTML", async () => {
    const page = await browser.newPage();
    for (const [name, html] of [...Object.entries(PAYLOADS), ["svg", SVG]] as const) {
      await page.setContent(`<div>${html}</div>`);
      await page.waitForFunction("window.pwned !== undefined", undefined, { timeout: 5000 }).catch(() => {});
      const ran = await page.evaluate("window.pwned");
      expect(ran, name).toBeDefined();
      await page.evaluate("delete window.pwned");
    }
    await page.close();
  });

  it("the dashboard shows each payload as text and runs none of them", async () => {
    const page = await browser.newPage();
    const blocked: string[] = [];
    page.on("console", (m) => blocked.push(m.text()));
    await page.goto(`${server.url}#vm=vma1`);
    await page.waitForSelector("body[data-ready='1']", { timeout: 20_000 });
    await page.waitForSelector("#hosts tbody tr", { timeout: 20_000 });
    await page.waitForSelector("#rollout-waves [data-status]", { timeout: 20_000 });
    await page.waitForSelector("#vm-audit tbody tr", { timeout: 20_000 });
    await page.waitForSelector("#topology-picture svg", { timeout: 20_000 });
    // Give anything that would run a moment to do so.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await page.evaluate("window.pwned")).toBeUndefined();
    // Shown literally, as text:
    expect(await page.textContent("#hosts tbody tr td:last-child")).toBe(`failed nft[netfleet]; ovs-port[x]: ${PAYLOADS.warning}`);
    expect(await page.getAttribute("#rollout-waves [data-host='hosta']", "title")).toBe(PAYLOADS.error);
    expect(await page.textContent("#vm-audit tbody tr td:nth-child(4)")).toBe(PAYLOADS.proto);
    // No element came out of any payload, and the picture kept its drawing but lost its script, handler, foreign content and link.
    expect(await page.$$eval("main img, main iframe, main script", (els) => els.length)).toBe(0);
    expect(await page.$$eval("#topology-picture svg *", (els) => els.map((e) => e.nodeName))).toEqual(["a", "text"]);
    expect(await page.getAttribute("#topology-picture svg", "onload")).toBeNull();
    expect(await page.getAttribute("#topology-picture svg a", "href")).toBeNull();
    expect(await page.textContent("#topology-picture svg text")).toBe("hv1");
    await page.close();
  });
});
