/**
 * Lab tier, the backend's firewall (issue 12, points 1, 2, 3, 5 and 6): the
 * table `inet netfleet` against the real nftables of the lab's backend
 * namespace. One lab for this file (prefix nfg, /tmp/nfg-lab), built from a
 * copy of inventories/lab with:
 * - service (egress open): `gateway_services: tcp 8080`;
 * - datain (egress open): `port_ranges: listen 22000 → every address :22,
 *   from 198.51.100.10` (vmb3 there is a DHCP VM);
 * - site: `dns_max_ttl: 6`, `name_set_timeout: 12` (short, for the name-set row).
 * Fixtures the test adds and removes itself: two namespaces routed through
 * the backend on interfaces that are not ours (a foreign forwarded flow), a
 * web server outside the backend's external subnet (198.51.100.80) and a
 * metadata server (169.254.169.254) in the lab's internet, listeners on the
 * backend (gateway services) and in vmb3 (port 22).
 *
 * Every attack is looked for at its target (the listener's log, a capture
 * where the packet would land), beside the legitimate case of its kind.
 */
import { execa, type ResultPromise } from "execa";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { controllerCommand, LABNET, labDown, labUp, readLabState, type LabOptions, type LabStatus } from "@netfleet/lab";

const NAME_SET_TIMEOUT = 12;
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const inventoryDir = mkdtempSync(join(tmpdir(), "nfg-inventory-"));
cpSync(join(repoRoot, "inventories", "lab"), inventoryDir, { recursive: true });
{
  const file = join(inventoryDir, "networks.yaml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["networks", "service", "gateway_services"], [{ proto: "tcp", ports: [8080] }]);
  doc.setIn(["networks", "datain", "port_ranges"], [{ listen: 22000, port: 22, from: ["198.51.100.10"] }]);
  writeFileSync(file, doc.toString());
  // name-set entries lapse after 12 s unused (dnsmasq caps TTLs at 6 s): the refresh row runs across 2.5 timeouts
  const siteFile = join(inventoryDir, "site.yaml");
  const site = parseDocument(readFileSync(siteFile, "utf8"));
  site.setIn(["site", "dns_max_ttl"], NAME_SET_TIMEOUT / 2);
  site.setIn(["site", "name_set_timeout"], NAME_SET_TIMEOUT);
  writeFileSync(siteFile, site.toString());
}
const lab: LabOptions = { inventoryDir, prefix: "nfg", runDir: "/tmp/nfg-lab", repoRoot };
const runner = new ExecaRunner({ timeoutMs: 60_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PYTHON = "/usr/bin/python3";

/** The foreign flow's namespaces (routed through the backend on nfgfa0/nfgfb0) and addresses. */
const FA = { ns: "nfg-xa", backendIf: "nfgfa0", ip: "10.250.1.2", gw: "10.250.1.1" };
const FB = { ns: "nfg-xb", backendIf: "nfgfb0", ip: "10.250.2.2", gw: "10.250.2.1" };
const WEB = "198.51.100.80";
/** The internet router's address, on the backend's external subnet (203.0.113.0/24). */
const EXTNET = "203.0.113.254";
const METADATA = "169.254.169.254";

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}
const must = async (argv: string[]) => {
  const r = await sh(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
};
const inNs = (ns: string, ...argv: string[]) => ["ip", "netns", "exec", ns, ...argv];

/** Polls until `check` holds; every wait in this file is bounded. */
async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(250);
  }
  return Date.now() - start;
}

/**
 * TCP connect from a namespace, optionally from a given source address;
 * prints the server's greeting line (labnet's `NAME <peer>`), or `none`
 * when the network gave no connection within the timeout.
 */
const CONNECT = String.raw`
import socket, sys
host, port, src, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    s = socket.create_connection((host, port), timeout=timeout, source_address=(src, 0) if src != "-" else None)
    s.settimeout(timeout)
    print(s.makefile().readline().strip() or "closed")
except (socket.timeout, ConnectionRefusedError, ConnectionResetError, OSError) as e:
    print("none", type(e).__name__)
`;
async function connect(ns: string, host: string, port: number, src = "-", timeoutS = 1.5): Promise<string> {
  const r = await sh(inNs(ns, PYTHON, "-c", CONNECT, host, String(port), src, String(timeoutS)));
  if (r.exitCode !== 0) throw new Error(`connect probe broke: ${r.stderr}`);
  return r.stdout.trim();
}

/** Processes this file started (listeners, captures), stopped by pid in afterAll. */
const started: ResultPromise[] = [];
function serve(ns: string, name: string, endpoints: string[]): ResultPromise {
  const p = execa("ip", ["netns", "exec", ns, process.execPath, LABNET, "serve", name, endpoints.join(",")], { reject: false, timeout: 600_000 });
  started.push(p);
  return p;
}
async function listening(ns: string, endpoint: string): Promise<boolean> {
  return (await sh(["ss", "-N", ns, "-Hltn"])).stdout.includes(endpoint);
}
/** tcpdump in a namespace until stopped; returns a stop function giving what it printed. */
async function capture(ns: string, iface: string, filter: string[]): Promise<() => Promise<string>> {
  const p = execa("ip", ["netns", "exec", ns, "tcpdump", "--immediate-mode", "-l", "-n", "-i", iface, ...filter], { reject: false, timeout: 120_000 });
  started.push(p);
  // --immediate-mode: each packet is handed to tcpdump as it comes. Without it, packets wait in the kernel's
  // TPACKET_V3 block until the block times out, and a SIGINT before that loses them: seen here as
  // "1 packet received by filter, 0 packets captured" while the VM had answered the probe (pcap(3PCAP), immediate mode).
  // And the probe goes once tcpdump says "listening on IFACE" (stderr: its capture is open), not after a fixed
  // pause that could race it. Bounded: 10 s, then the probe goes anyway.
  await new Promise<void>((resolve) => {
    let said = "";
    const timer = setTimeout(resolve, 10_000);
    p.stderr?.on("data", (chunk: Buffer) => {
      said += String(chunk);
      if (said.includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    void p.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  return async () => {
    p.kill("SIGINT");
    return String((await p).stdout);
  };
}

describe.skipIf(!isRoot)("gateway firewall (prefix nfg, /tmp/nfg-lab)", () => {
  let status: LabStatus;
  let backendNs = "";
  let agentLog = "";
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const nft = (...args: string[]) => must(inNs(backendNs, "nft", ...args));
  const logSince = (offset: number) =>
    readFileSync(agentLog, "utf8").slice(offset).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const statusJson = async () => JSON.parse((await must(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["status", "--json"])))) as unknown;

  beforeAll(async () => {
    await labDown(lab);
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    expect(status.problems ?? []).toEqual([]);
    const backend = status.hosts.find((h) => h.role === "backend")!;
    backendNs = backend.namespace;
    agentLog = join(backend.agentDir, "agent.log");
    const inet = status.inet!.namespace;
    // The lab's internet gets a web server outside the backend's external subnet, and a metadata address.
    await must(inNs(inet, "ip", "address", "add", `${WEB}/32`, "dev", "lo"));
    await must(inNs(inet, "ip", "address", "add", `${METADATA}/32`, "dev", "lo"));
    serve(inet, "web", [`${WEB}:80`]);
    serve(inet, "metadata", [`${METADATA}:80`]);
    // and a server on the backend's external subnet itself (the internet router's own address)
    serve(inet, "extnet", [`${EXTNET}:80`]);
    // Two namespaces routed through the backend on interfaces that are not ours.
    for (const x of [FA, FB]) {
      await must(["ip", "netns", "add", x.ns]);
      await must(["ip", "link", "add", x.backendIf, "netns", backendNs, "type", "veth", "peer", "name", "eth0", "netns", x.ns]);
      await must(inNs(backendNs, "ip", "address", "add", `${x.gw}/24`, "dev", x.backendIf));
      await must(inNs(backendNs, "ip", "link", "set", x.backendIf, "up"));
      await must(inNs(x.ns, "ip", "address", "add", `${x.ip}/24`, "dev", "eth0"));
      await must(inNs(x.ns, "ip", "link", "set", "eth0", "up"));
      await must(inNs(x.ns, "ip", "link", "set", "lo", "up"));
      await must(inNs(x.ns, "ip", "route", "add", "default", "via", x.gw));
    }
    serve(FB.ns, "foreignb", [`${FB.ip}:80`]);
    // Listeners for the gateway-service row (on the backend) and the range forward (in vmb3, a DHCP VM).
    serve(backendNs, "gwsvc", ["10.82.0.1:8080", "10.82.0.1:8081"]);
    serve(vm("vmb3").namespace, "vmb3", ["0.0.0.0:22"]);
    await eventually("the test's listeners", 10_000, async () =>
      (await listening(inet, `${WEB}:80`)) && (await listening(inet, `${EXTNET}:80`)) && (await listening(FB.ns, `${FB.ip}:80`)) && (await listening(backendNs, "10.82.0.1:8081")) && (await listening(vm("vmb3").namespace, "0.0.0.0:22")));
  }, 360_000);

  afterAll(async () => {
    for (const p of started) p.kill("SIGTERM");
    await Promise.all(started.map((p) => p.catch(() => undefined)));
    for (const x of [FA, FB]) await sh(["ip", "netns", "del", x.ns]);
    await labDown(lab);
    rmSync(inventoryDir, { recursive: true, force: true });
  }, 90_000);

  it("the table converged by the agent plans nothing on the next passes (no flapping), and its forward chain accepts by policy", async () => {
    const mark = readFileSync(agentLog, "utf8").length;
    const forward = await nft("list", "chain", "inet", "netfleet", "forward");
    expect(forward).toContain("type filter hook forward priority filter; policy accept;");
    // two full passes (30 s apart) after lab up: neither changes the table
    await eventually("two full passes", 75_000, async () => logSince(mark).filter((e) => e.event === "reconcile" && e.pass === "full").length >= 2);
    const passes = logSince(mark).filter((e) => e.event === "reconcile");
    expect(passes.filter((e) => JSON.stringify(e.corrective ?? []).includes("nft-table")), JSON.stringify(passes)).toEqual([]);
    expect(passes.filter((e) => JSON.stringify(e.failures ?? []).includes("nft-table")), JSON.stringify(passes)).toEqual([]);
  }, 100_000);
  it("a foreign flow the backend forwards on other interfaces survives our table, while our networks stay filtered", async () => {
    const vma2 = vm("vma2");
    const atFb = await capture(FB.ns, "eth0", ["tcp[tcpflags] & tcp-syn != 0 and dst port 80"]);
    const atVma2 = await capture(vma2.namespace, vma2.interface, ["tcp[tcpflags] & tcp-syn != 0 and src host", FA.ip]);
    expect(await connect(FA.ns, FB.ip, 80), "the foreign flow").toBe(`foreignb ${FA.ip}`);
    expect(await connect(vma2.namespace, FB.ip, 80), "our open network to a non-external interface").toMatch(/^none/);
    expect(await connect(FA.ns, vma2.ip!, 22), "a foreign interface into our network").toMatch(/^none/);
    const fb = await atFb();
    const v2 = await atVma2();
    expect(fb, "FB saw the foreign flow").toContain(`${FA.ip}.`);
    expect(fb, "FB never saw vma2").not.toContain(`${vma2.ip}.`);
    expect(v2, "vma2 never saw FA").not.toContain(`${FA.ip}.`);
  }, 60_000);

  it("open egress: the internet yes; the management network, link-local metadata and the backend's external subnet no (looked for where they would land)", async () => {
    const vma2 = vm("vma2");
    const inet = status.inet!.namespace;
    expect(await connect(vma2.namespace, WEB, 80), "control: a web server on the internet, masqueraded").toBe("web 203.0.113.1");
    // the paths exist: the backend itself reaches the metadata address and the controller's NATS port
    expect(await connect(backendNs, METADATA, 80), "control: the backend reaches the metadata address").toBe("metadata 203.0.113.1");
    expect(await connect(backendNs, "10.99.0.254", 4222), "control: the backend reaches the management network").toMatch(/^INFO /);
    expect(await connect(backendNs, EXTNET, 80), "control: the backend reaches its external subnet").toBe("extnet 203.0.113.1");
    const atInet = await capture(inet, "inet0", ["tcp[tcpflags] & tcp-syn != 0 and (dst host", METADATA, "or dst host", `${EXTNET})`]);
    const atMgmt = await capture(backendNs, "mgmt0", ["tcp[tcpflags] & tcp-syn != 0 and dst host 10.99.0.254 and not src host 10.99.0.3"]);
    expect(await connect(vma2.namespace, METADATA, 80)).toMatch(/^none/);
    expect(await connect(vma2.namespace, "10.99.0.254", 4222)).toMatch(/^none/);
    expect(await connect(vma2.namespace, EXTNET, 80), "the backend's external subnet").toMatch(/^none/);
    const seenInet = await atInet();
    const seenMgmt = await atMgmt();
    expect(seenInet, "nothing reached the metadata address or the external subnet").not.toMatch(/ > (169\.254\.169\.254|203\.0\.113\.254)\.80:/);
    expect(seenMgmt, "nothing left towards the management network").not.toContain("> 10.99.0.254.4222");
    // an allowlist network's allowed destination stays reachable
    expect(await connect(vm("vma1").namespace, "198.51.100.10", 80)).toBe("inet 203.0.113.1");
  }, 60_000);

  it("gateway services: the listed port on the own gateway opens, an unlisted one and another network's VM stay out (counted at the drop)", async () => {
    const vma2 = vm("vma2");
    const drops = async () => Number(/counter packets (\d+) bytes \d+ drop/.exec(await nft("list", "chain", "inet", "netfleet", "from_vms"))?.[1] ?? NaN);
    expect(await connect(vma2.namespace, "10.82.0.1", 8080)).toBe(`gwsvc ${vma2.ip}`);
    const before = await drops();
    expect(await connect(vma2.namespace, "10.82.0.1", 8081)).toMatch(/^none/);
    expect(await connect(vm("vmb3").namespace, "10.82.0.1", 8080), "another network's VM").toMatch(/^none/);
    expect(await drops(), "the SYNs died at the gateway's input drop").toBeGreaterThanOrEqual(before + 2);
  }, 30_000);

  it("a port range reaches a DHCP VM from the allowed source; another source never arrives", async () => {
    const vmb3 = vm("vmb3");
    expect(vmb3.ip, "vmb3 holds a lease").toMatch(/^10\.83\.0\.1\d\d$/);
    const port = 22000 + Number(vmb3.ip!.split(".")[3]);
    const inet = status.inet!.namespace;
    const atVm = await capture(vmb3.namespace, vmb3.interface, ["tcp[tcpflags] & tcp-syn != 0 and dst port 22"]);
    expect(await connect(inet, "203.0.113.1", port, "198.51.100.10")).toBe("vmb3 198.51.100.10");
    expect(await connect(inet, "203.0.113.1", port, "198.51.100.20")).toMatch(/^none/);
    const seen = await atVm();
    expect(seen).toContain("198.51.100.10.");
    expect(seen).not.toContain("198.51.100.20.");
  }, 30_000);

  it("hairpin: a VM of an open network reaches a port-forward at the backend's external address, masqueraded back through the backend; not at a gateway address, not from an allowlist network", async () => {
    expect(await connect(vm("vmb3").namespace, "203.0.113.1", 2222)).toBe("vma2 10.82.0.1");
    expect(await connect(vm("vmb3").namespace, "203.0.113.1", 2223), "a port not forwarded").toMatch(/^none/);
    // an allowlist network's VM: a forward would be a way past its allow list into another network
    expect(await connect(vm("vma1").namespace, "203.0.113.1", 2222), "no hairpin from an allowlist network").toMatch(/^none/);
    expect(await connect(vm("vmb3").namespace, "10.83.0.1", 2222), "a gateway address is no hairpin").toMatch(/^none/);
    expect(await connect(status.inet!.namespace, "203.0.113.1", 2222), "control: from the internet").toBe("vma2 203.0.113.254");
  }, 30_000);

  it("a foreign table dropping forwarded traffic is reported in status; the report goes with the table", async () => {
    const warned = async () => JSON.stringify(await statusJson()).includes("foreign-drop: table ip filter chain FORWARD (hook forward, priority 0, policy drop)");
    expect(await warned()).toBe(false);
    await nft("add", "table", "ip", "filter");
    try {
      await nft("add", "chain", "ip", "filter", "FORWARD", "{ type filter hook forward priority 0; policy drop; }");
      const ms = await eventually("status shows the foreign drop", 75_000, warned);
      process.stderr.write(`foreign-drop reported in status ${ms} ms after the table appeared\n`);
      // what it says is so: our open network's traffic dies there while the table is in place
      expect(await connect(vm("vma2").namespace, WEB, 80)).toMatch(/^none/);
    } finally {
      await nft("delete", "table", "ip", "filter");
    }
    expect(await connect(vm("vma2").namespace, WEB, 80)).toBe("web 203.0.113.1");
    await eventually("the warning gone", 75_000, async () => !(await warned()));
  }, 180_000);

  it("hand edits (an inserted accept, a flushed chain, a deleted set element, a changed policy) are repaired within one full pass, reported corrective, name sets kept", async () => {
    const vma1 = vm("vma1");
    const inet = status.inet!.namespace;
    const table = async () => (await nft("list", "table", "inet", "netfleet")).replace(/counter packets \d+ bytes \d+/g, "counter").replace(/elements = \{[^}]*\}/g, "");
    const nameSet = (await nft("list", "table", "inet", "netfleet")).match(/set (dns_[0-9a-f]+) \{/)![1]!;
    // an address in the name set (as dnsmasq puts it there), with a long timeout of its own so only a lost set loses it
    await nft("add", "element", "inet", "netfleet", nameSet, "{ 192.0.2.77 timeout 300s }");
    const good = await table();
    // controls before the edits
    expect(await connect(vma1.namespace, "198.51.100.10", 80)).toBe("inet 203.0.113.1");
    expect(await connect(vma1.namespace, "198.51.100.20", 80)).toMatch(/^none/);
    expect(await connect(inet, "203.0.113.1", 2222)).toBe("vma2 203.0.113.254");
    expect(await connect(FA.ns, FB.ip, 80)).toBe(`foreignb ${FA.ip}`);
    const mark = readFileSync(agentLog, "utf8").length;
    await nft("insert", "rule", "inet", "netfleet", "forward", "iifname", '"gw-secure"', "accept");
    await nft("flush", "chain", "inet", "netfleet", "prerouting");
    await nft("delete", "element", "inet", "netfleet", "allow_all_tcp", "{ 10.81.0.11 . 198.51.100.10 }");
    await nft("chain", "inet", "netfleet", "forward", "{ policy drop; }");
    const edited = Date.now();
    // the edits are real while they last (informative: a full pass may already have run)
    const during = await connect(vma1.namespace, "198.51.100.20", 80, "-", 1);
    process.stderr.write(`during the edits vma1 -> 198.51.100.20:80 gave ${JSON.stringify(during)}\n`);
    await eventually("the table as it was", 45_000, async () => (await table()) === good);
    process.stderr.write(`nft drift repaired ${Date.now() - edited} ms after the edits\n`);
    await eventually("the repair reported corrective", 10_000, async () =>
      logSince(mark).some((e) => e.event === "reconcile" && JSON.stringify(e.corrective ?? []).includes("nft-table[netfleet]")));
    expect(await connect(vma1.namespace, "198.51.100.10", 80)).toBe("inet 203.0.113.1");
    expect(await connect(vma1.namespace, "198.51.100.20", 80)).toMatch(/^none/);
    expect(await connect(inet, "203.0.113.1", 2222)).toBe("vma2 203.0.113.254");
    expect(await connect(FA.ns, FB.ip, 80)).toBe(`foreignb ${FA.ip}`);
    expect(await nft("list", "set", "inet", "netfleet", nameSet), "the name set's element survived the replacement").toContain("192.0.2.77 ");
    // status carries the repair with its before/after lines
    await eventually("status shows the repair", 20_000, async () => JSON.stringify(await statusJson()).includes('iifname \\"gw-secure\\" accept'));
  }, 120_000);

  it("an allowed name's address in use never lapses (refreshed by each new connection) across 2.5 set timeouts; an unused one does", async () => {
    const vmb1 = vm("vmb1");
    const nameSet = (await nft("list", "table", "inet", "netfleet")).match(/set (dns_[0-9a-f]+) \{/)![1]!;
    const answer = await sh(inNs(vmb1.namespace, "dig", "+short", "+time=2", "+tries=2", "@10.81.0.1", "mirror.inet.test"));
    expect(answer.stdout.trim(), answer.stderr).toBe("198.51.100.20");
    await nft("add", "element", "inet", "netfleet", nameSet, "{ 192.0.2.78 }"); // the control: in the set, never used
    const start = Date.now();
    let connections = 0;
    // no DNS from here on: only the connections' `update` can keep the address in the set
    while (Date.now() - start < NAME_SET_TIMEOUT * 2500) {
      expect(await connect(vmb1.namespace, "198.51.100.20", 80), `after ${Date.now() - start} ms`).toBe("inet 203.0.113.1");
      connections++;
      await sleep((NAME_SET_TIMEOUT * 1000) / 3); // a new connection well within each timeout
    }
    const set = await nft("list", "set", "inet", "netfleet", nameSet);
    process.stderr.write(`name set after ${Date.now() - start} ms and ${connections} connections: ${set.replace(/\s+/g, " ")}\n`);
    expect(set).toContain("198.51.100.20 ");
    expect(set, "the unused address lapsed").not.toContain("192.0.2.78");
  }, 150_000);

  it("a structural change rolled out (a new port-forward) replaces the table without emptying the name sets: a VM using an allowed name keeps connecting, no DNS", async () => {
    const vmb1 = vm("vmb1");
    const answer = await sh(inNs(vmb1.namespace, "dig", "+short", "+time=2", "+tries=2", "@10.81.0.1", "mirror.inet.test"));
    expect(answer.stdout.trim(), answer.stderr).toBe("198.51.100.20");
    const hashBefore = /netfleet structure=([0-9a-f]+)/.exec(await nft("list", "chain", "inet", "netfleet", "forward"))![1];
    const file = join(inventoryDir, "networks.yaml");
    const doc = parseDocument(readFileSync(file, "utf8"));
    doc.addIn(["networks", "service", "port_forwards"], { listen: 2223, vm: "vma2", port: 22 });
    writeFileSync(file, doc.toString());
    // vmb1 connects every second while the rollout runs (each new connection refreshes its address, and needs it in the set)
    const results: { at: number; got: string }[] = [];
    let rolling = true;
    const user = (async () => {
      for (let i = 0; i < 120 && rolling; i++) {
        const at = Date.now();
        results.push({ at, got: await connect(vmb1.namespace, "198.51.100.20", 80) });
        await sleep(1_000);
      }
    })();
    let replacedAt = 0;
    try {
      const r = await sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["rollout", inventoryDir, "--yes"]));
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      await eventually("the new forward in the table", 30_000, async () => (await nft("list", "chain", "inet", "netfleet", "prerouting")).includes("dport 2223 "));
      replacedAt = Date.now();
      await eventually("connections after the replacement", 20_000, async () => results.filter((x) => x.at > replacedAt).length >= 3);
    } finally {
      rolling = false;
      await user;
    }
    const hashAfter = /netfleet structure=([0-9a-f]+)/.exec(await nft("list", "chain", "inet", "netfleet", "forward"))![1];
    expect(hashAfter, "the table was replaced").not.toBe(hashBefore);
    process.stderr.write(`vmb1 across the structural change: ${results.length} connections (${results.filter((x) => x.at > replacedAt).length} after it): ${JSON.stringify([...new Set(results.map((x) => x.got))])}\n`);
    expect(results.map((x) => x.got).filter((g) => g !== "inet 203.0.113.1"), "every connection, before, during and after").toEqual([]);
    expect(await nft("list", "set", "inet", "netfleet", /set (dns_[0-9a-f]+) \{/.exec(await nft("list", "table", "inet", "netfleet"))![1]!)).toContain("198.51.100.20 ");
    expect(await connect(status.inet!.namespace, "203.0.113.1", 2223), "the new forward works").toBe("vma2 203.0.113.254");
  }, 180_000);
});
