/**
 * Lab tier, the read-only dashboard (issue 17 point 2) in a real headless
 * Chromium (Debian's /usr/bin/chromium driven by playwright-core) against
 * the lab's own controller (`netfleet serve --ui 127.0.0.1:34180` in the
 * controller's namespace, packages/lab/src/ui-dashboard.ts). One lab for
 * this file (prefix nfui, /tmp/nfui-lab) from a copy of inventories/lab.
 * The browser runs inside the controller's namespace (`ip netns exec`), as
 * a user on the controller host would; what the page shows is read from
 * its DOM and compared with the lab as built:
 * - every inventory host in the fleet table, converged;
 * - the topology picture (the graph feature's Graphviz SVG, inline): every
 *   host coloured converged, every network and VM present;
 * - a rollout followed live, without reloading: an edited copy (vma1 may
 *   also reach 198.51.100.20) rolled out and the original rolled back, the
 *   page showing hosts in flight and then every host ok under the
 *   rollout ids the rollouts printed;
 * - vma1's policy (network, isolation, allow list, extra address, each
 *   key's provenance) and its
 *   recent audit lines: a connection it made and one the gateway refused,
 *   beside vmb4's refused connection, which is not among them;
 * - the dashboard is not reachable from the management network (the
 *   backend's namespace), where the controller's NATS port is (control).
 * The page is kept as test-artifacts/ui-dashboard.png.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { parseDocument } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner } from "@netfleet/agent";
import { labDown, labRollout, labUp, tcpConnect, type LabOptions, type LabStatus } from "@netfleet/lab";
import { LAB_UI_LISTEN, LAB_UI_URL } from "../../packages/lab/src/ui-dashboard.ts";
import { domId } from "../../packages/controller/src/graph/index.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const original = mkdtempSync(join(tmpdir(), "nfui-original-"));
cpSync(join(repoRoot, "inventories", "lab"), original, { recursive: true });
const edited = mkdtempSync(join(tmpdir(), "nfui-edited-"));
cpSync(original, edited, { recursive: true });
{
  const file = join(edited, "networks.yaml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["networks", "secure", "vms", "vma1", "allow"], [{ to: "198.51.100.10" }, { to: "198.51.100.20" }]);
  writeFileSync(file, doc.toString());
}
const lab: LabOptions = { inventoryDir: original, prefix: "nfui", runDir: "/tmp/nfui-lab", repoRoot };
const runner = new ExecaRunner({ timeoutMs: 30_000 });
const isRoot = process.getuid?.() === 0;
const ARTIFACT = join(repoRoot, "test-artifacts", "ui-dashboard.png");
/** The flags the brief fixes for a quiet, reproducible headless Chromium. */
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const log = (line: string) => process.stderr.write(`[nfui] ${line}\n`);

/**
 * Debian's Chromium inside `namespace`: `ip netns exec NS /usr/bin/chromium`
 * keeps the DevTools pipe (fds 3 and 4) that playwright-core talks over, so
 * the browser is spawned whole by playwright (and killed by it, process
 * group) with only our arguments (ignoreDefaultArgs) and a new empty profile.
 */
async function browserIn(namespace: string, profile: string): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/ip",
    ignoreDefaultArgs: true,
    args: ["netns", "exec", namespace, "/usr/bin/chromium", "--remote-debugging-pipe", `--user-data-dir=${profile}`, ...CHROMIUM_FLAGS, "--window-size=1400,1800", "about:blank"],
    timeout: 60_000,
  });
}

/**
 * Polls `expression` in the page until it is truthy (bounded). Through
 * page.evaluate (a DevTools evaluation, which the page's CSP does not
 * govern); waitForFunction's string predicates run through eval in the
 * page, which its CSP (script-src 'self', no 'unsafe-eval') refuses.
 */
async function waitInPage(page: Page, expression: string, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The texts of the elements `selector` matches. */
const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? "").trim()));

describe.skipIf(!isRoot)("the dashboard in headless Chromium (prefix nfui, /tmp/nfui-lab)", () => {
  let status: LabStatus;
  let browser: Browser;
  let page: Page;
  let profile = "";
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;

  beforeAll(async () => {
    await labDown(lab);
    const t0 = Date.now();
    status = await labUp(lab, log);
    expect(status.problems ?? []).toEqual([]);
    log(`lab up in ${Date.now() - t0} ms`);
    profile = mkdtempSync(join(tmpdir(), "nfui-chromium-"));
    const t1 = Date.now();
    browser = await browserIn(status.controller!.namespace, profile);
    page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(LAB_UI_URL);
    await page.waitForSelector("body[data-ready='1']", { timeout: 30_000 });
    log(`Chromium started and the page ready in ${Date.now() - t1} ms; page errors: ${errors.length ? errors.join(" | ") : "none"}`);
  }, 400_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await labDown(lab);
    for (const d of [original, edited, profile]) if (d) rmSync(d, { recursive: true, force: true });
  }, 90_000);

  it("shows every inventory host of the lab, converged, and the site's name", async () => {
    await waitInPage(page, `document.querySelectorAll("#hosts tbody tr").length === ${status.hosts.length}`, "a row per host");
    const rows = await page.$$eval("#hosts tbody tr", (trs) => trs.map((tr) => `${tr.getAttribute("data-host")} ${tr.getAttribute("data-health")}`));
    expect(rows).toEqual(status.hosts.map((h) => `${h.name} converged`).sort());
    expect(await page.textContent("#site")).toBe("lab");
    expect(await page.textContent("#live")).toBe("live");
    expect(await page.textContent("#fleet-summary")).toMatch(new RegExp(`^${status.hosts.length} hosts: ${status.hosts.length} converged`));
  });

  it("draws the topology (Graphviz SVG inline): every host coloured converged, every network and VM", async () => {
    await page.waitForSelector("#topology-picture svg", { timeout: 30_000 });
    const classOf = (id: string) => page.getAttribute(`#topology-picture svg g#${id}`, "class");
    for (const h of status.hosts) expect(await classOf(domId(`host:${h.name}`)), h.name).toMatch(/\bnf-host\b.*\bnf-converged\b/);
    const vms = status.vms.filter((v) => v.kind === "namespace");
    expect(vms.length).toBeGreaterThan(0);
    for (const v of vms) expect(await classOf(domId(`vm:${v.network}/${v.name}`)), `${v.network}/${v.name}`).toMatch(/\bnf-vm\b/);
    for (const n of new Set(vms.map((v) => v.network))) expect(await classOf(domId(`net:${n}`)), n).toMatch(/\bnf-network\b/);
    // What the page put there is drawing only: no script survived (sanitizedSvg), whatever the renderer sent.
    expect(await page.$$eval("#topology-picture script, #topology-picture foreignObject", (els) => els.length)).toBe(0);
  });

  it("follows a rollout live: hosts in flight, then every host ok, without a reload", async () => {
    // labUp's own rollout is the last one: done.
    await waitInPage(page, `document.querySelector("#rollout-summary")?.getAttribute("data-phase") === "done"`, "the last rollout shown done");
    // Record every host status the page shows from now on (a MutationObserver in the page), and mark this load.
    // In-page code is given as text: this file is compiled without the DOM's types.
    await page.evaluate(`(() => {
      window.seen = [];
      window.loadMark = "before-rollout";
      const note = () => document.querySelectorAll("#rollout-waves [data-status]").forEach((e) => window.seen.push(e.getAttribute("data-host") + " " + e.getAttribute("data-status")));
      new MutationObserver(note).observe(document.getElementById("rollout-waves"), { childList: true, subtree: true });
    })()`);
    let rolled: string[] = [];
    // The backend's agent is held (SIGSTOP) while its rollout starts, and let go once the page shows it applying:
    // an apply of the backend's nft set takes ~0.2 s, within the page's coalescing of rollout writes, so without
    // the hold "applying" could come and go between two refreshes. A host that is slow to apply is real; a race is not.
    const backendAgent = Number(readFileSync(join(lab.runDir, "hosts", "backend", "agent", "agent.pid"), "utf8").trim());
    expect(Number.isSafeInteger(backendAgent) && backendAgent > 1, "the backend agent's pid").toBe(true);
    for (const [dir, what] of [[edited, "edited"], [original, "original"]] as const) {
      const t0 = Date.now();
      process.kill(backendAgent, "SIGSTOP");
      let r: Awaited<ReturnType<typeof labRollout>>;
      try {
        const rolling = labRollout(lab, dir, { json: true });
        await waitInPage(page, `[...document.querySelectorAll("#rollout-waves [data-status]")].some((e) => e.getAttribute("data-host") === "backend" && e.getAttribute("data-status") === "applying")`, `${what}: the backend shown applying while its agent is held`);
        process.kill(backendAgent, "SIGCONT");
        r = await rolling;
      } finally {
        process.kill(backendAgent, "SIGCONT");
      }
      expect(r.exitCode, `${what}: ${r.stderr.join("\n")}`).toBe(0);
      const started = r.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => typeof e.rolloutId === "string" && Array.isArray(e.waves))!;
      const id = started.rolloutId as string;
      rolled = (started.waves as string[][]).flat();
      await waitInPage(page, `(document.querySelector("#rollout-summary")?.textContent ?? "").startsWith(${JSON.stringify(`${id}: done`)})`, `rollout ${id} shown done`);
      log(`${what} rollout ${id}: done on the page ${Date.now() - t0} ms after it started (rollout itself included)`);
    }
    const seen = (await page.evaluate("window.seen")) as string[];
    // In flight: the hosts whose assignment changed (the backend: an allow entry is its nft set) were shown applying.
    expect(seen.some((s) => s.endsWith(" applying")), seen.join(", ")).toBe(true);
    // At the end: exactly the hosts the last rollout printed in its waves, each ok.
    const final = await page.$$eval("#rollout-waves [data-status]", (els) => els.map((e) => `${e.getAttribute("data-host")} ${e.getAttribute("data-status")}`));
    expect(rolled.length).toBeGreaterThan(0);
    expect(final).toEqual(rolled.map((h) => `${h} ok`));
    log(`host states the page showed during the two rollouts: ${[...new Set(seen)].join(", ")}`);
    expect(await page.evaluate("window.loadMark")).toBe("before-rollout");
    expect(await page.getAttribute("#rollout-progress", "value")).toBe(await page.getAttribute("#rollout-progress", "max"));
  });

  it("shows vma1's policy: network, isolation, allow list, extra address, host", async () => {
    await page.evaluate(`location.hash = "vm=vma1"`);
    await page.waitForSelector("#vm-policy .nic[data-network='secure'] dl", { timeout: 20_000 });
    const pairs = async (dl: string) => {
      const dts = await texts(page, `#vm-policy ${dl} dt`);
      const dds = await texts(page, `#vm-policy ${dl} dd`);
      return Object.fromEntries(dts.map((k, i) => [k, dds[i]]));
    };
    expect(await page.textContent("#vm-policy h3")).toBe("vma1 on secure (VLAN 1081, 10.81.0.0/24)");
    expect(await pairs("dl:not(.effective)")).toMatchObject({
      address: `10.81.0.11  ${vm("vma1").mac.toLowerCase()}  + 10.81.0.50`,
      host: vm("vma1").host,
      isolation: "not isolated",
      egress: "allowlist",
      allow: "198.51.100.10",
      forwards: "none",
    });
    // Each value's provenance (the profiles feature's effective policy): the network's default, the VM's own keys.
    expect(await pairs("dl.effective")).toMatchObject({ isolated: "no(network secure)", allow: "198.51.100.10(VM)", extra_addresses: "10.81.0.50(VM)" });
    // Another VM for contrast: vma2 has the port-forward 2222 -> vma2:22.
    await page.evaluate(`location.hash = "vm=vma2"`);
    await page.waitForSelector("#vm-policy .nic[data-network='service']", { timeout: 20_000 });
    expect(await texts(page, "#vm-policy dd")).toContain("tcp 2222 → vma2:22");
  });

  it("shows vma1's recent audit lines: one connection reached, one refused; not vmb4's", async () => {
    const allowedWeb = "198.51.100.10";
    // The original site (rolled back above) allows vma1 198.51.100.10 only: the other web server is refused.
    const otherWeb = status.inet!.web.find((w) => w !== allowedWeb)!;
    expect(await tcpConnect(runner, vm("vma1").namespace, allowedWeb, 80)).toMatchObject({ ran: true, connected: true });
    expect(await tcpConnect(runner, vm("vma1").namespace, otherWeb, 80, { timeoutMs: 1500 })).toMatchObject({ ran: true, connected: false });
    expect(await tcpConnect(runner, vm("vmb4").namespace, allowedWeb, 8080, { timeoutMs: 1500 })).toMatchObject({ ran: true, connected: false });
    const t0 = Date.now();
    let rows: string[] = [];
    for (let i = 0; i < 30; i++) {
      await page.evaluate(`location.hash = ""`);
      await page.evaluate(`location.hash = "vm=vma1"`);
      await waitInPage(page, `!(document.querySelector("#vm-audit-summary")?.textContent ?? "").startsWith("loading")`, "vma1's audit lines loaded");
      rows = await page.$$eval("#vm-audit tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent).join(" | ")));
      if (rows.some((r) => r.includes(`reached | out | tcp | 10.81.0.11`) && r.includes(`${allowedWeb}:80`)) && rows.some((r) => r.includes("refused | out") && r.includes(`${otherWeb}:80`))) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    log(`vma1's audit lines on the page ${Date.now() - t0} ms after the connections: ${rows.length} lines`);
    expect(rows.some((r) => r.includes("reached | out | tcp | 10.81.0.11") && r.includes(`${allowedWeb}:80 | secure at`))).toBe(true);
    expect(rows.some((r) => r.includes("refused | out | tcp | 10.81.0.11") && r.includes(`${otherWeb}:80 | secure at`))).toBe(true);
    expect(rows.some((r) => r.includes(":8080"))).toBe(false);
    mkdirSync(join(repoRoot, "test-artifacts"), { recursive: true });
    await page.evaluate("window.scrollTo(0, 0)");
    await page.screenshot({ path: ARTIFACT, fullPage: true });
    expect(readFileSync(ARTIFACT).subarray(1, 4).toString()).toBe("PNG");
    log(`screenshot: ${ARTIFACT}`);
  });

  it("is reachable only on the controller's loopback: not from the management network, where NATS is (control)", async () => {
    const backend = status.hosts.find((h) => h.role === "backend")!;
    const controllerAddress = new URL(status.controller!.nats).hostname;
    const natsPort = Number(new URL(status.controller!.nats).port);
    expect(await tcpConnect(runner, backend.namespace, controllerAddress, natsPort, { timeoutMs: 1500 })).toMatchObject({ ran: true, connected: true });
    const port = Number(LAB_UI_LISTEN.split(":")[1]);
    expect(await tcpConnect(runner, backend.namespace, controllerAddress, port, { timeoutMs: 1500 })).toMatchObject({ ran: true, connected: false, reason: "refused" });
  });
});
