/**
 * Lab tier, the gateway audit (issue 12, point 9): the backend's firewall
 * logs new outbound connections it lets out and the packets it drops to
 * each network's nflog group; the backend's agent reads them (tcpdump -i
 * nflog:<vlan>), publishes them to the site's audit stream, and the
 * operator asks `netfleet audit <vm>`. One lab for this file (prefix nfu,
 * /tmp/nfu-lab), built from a copy of inventories/lab as it is (audit is on
 * by default: secure logs to group 1081).
 *
 * Everything is checked where it lands: a connection is made (or refused)
 * for real from a VM namespace, and the line must come back through the
 * controller's CLI; beside each VM's lines, another VM's refused connection
 * must not appear in them.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { controllerCommand, labDown, labStartAgent, labUp, readLabState, tcpConnect, type LabOptions, type LabStatus } from "@netfleet/lab";
import { captureMarker } from "../../packages/agent/src/gateway/audit-pidfile.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const inventoryDir = mkdtempSync(join(tmpdir(), "nfu-inventory-"));
cpSync(join(repoRoot, "inventories", "lab"), inventoryDir, { recursive: true });
const lab: LabOptions = { inventoryDir, prefix: "nfu", runDir: "/tmp/nfu-lab", repoRoot };
const runner = new ExecaRunner({ timeoutMs: 60_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Line {
  time: string;
  verdict: "allow" | "drop";
  direction: "out" | "in";
  src: string;
  dst: string;
  proto: string;
  dport?: number;
  mac?: string;
  host: string;
  network: string;
}

/** Polls until `check` holds; every wait in this file is bounded. Returns the ms it took. */
async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(500);
  }
  return Date.now() - start;
}

describe.skipIf(!isRoot)("gateway audit (prefix nfu, /tmp/nfu-lab)", () => {
  let status: LabStatus;
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const backend = () => status.hosts.find((h) => h.role === "backend")!;

  /** `netfleet audit VM --json` through the lab controller's CLI. */
  async function audit(name: string, ...extra: string[]): Promise<{ records: Line[]; lost: number; nics: { addresses: string[] }[] }> {
    const started = Date.now();
    const r = await runner.run(read(...controllerCommand(readLabState(lab.runDir)!.topology, lab, ["audit", name, inventoryDir, "--since", "15m", "--json", ...extra])), { allowFailure: true });
    if (r.exitCode !== 0) throw new Error(`netfleet audit ${name} exited ${r.exitCode}: ${r.stderr}`);
    process.stderr.write(`netfleet audit ${name}: ${Date.now() - started} ms (a whole CLI run: node start, connect, read)\n`);
    return JSON.parse(r.stdout) as { records: Line[]; lost: number; nics: { addresses: string[] }[] };
  }

  beforeAll(async () => {
    await labDown(lab);
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    expect(status.problems ?? []).toEqual([]);
  }, 300_000);

  afterAll(async () => {
    await labDown(lab);
    rmSync(inventoryDir, { recursive: true, force: true });
  }, 60_000);

  it("the backend's agent captures each audited network's nflog group", async () => {
    const log = join(backend().agentDir, "agent.log");
    await eventually("captures of secure (1081) and service (1082) started", 30_000, async () => {
      const events = readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      const started = events.filter((e) => e.event === "audit-capture-start").map((e) => `${e.network}:${e.group}`);
      return started.includes("secure:1081") && started.includes("service:1082");
    });
    // datain is audited too (default), so three groups; nothing else.
    const ruleset = (await runner.run(read("ip", "netns", "exec", backend().namespace, "nft", "list", "table", "inet", "netfleet"))).stdout;
    expect(ruleset).toMatch(/log prefix "nf allow secure " group 1081/);
    expect(ruleset).toMatch(/log prefix "nf drop secure " group 1081/);
  });

  it("an allowed and a refused connection from a VM are audit lines of that VM, and only of that VM", async () => {
    // vma1 (secure, allowlist) may reach 198.51.100.10 only (inventories/lab); vmb4 (secure, DHCP) may reach none.
    const allowedWeb = "198.51.100.10";
    const otherWeb = status.inet!.web.find((w) => w !== allowedWeb)!;
    expect(status.inet!.web).toContain(allowedWeb);
    const t0 = Date.now();
    const reached = await tcpConnect(runner, vm("vma1").namespace, allowedWeb, 80);
    expect(reached).toMatchObject({ ran: true, connected: true });
    const refused = await tcpConnect(runner, vm("vma1").namespace, otherWeb, 80, { timeoutMs: 1500 });
    expect(refused).toMatchObject({ ran: true, connected: false });
    const dhcpRefused = await tcpConnect(runner, vm("vmb4").namespace, allowedWeb, 8080, { timeoutMs: 1500 });
    expect(dhcpRefused).toMatchObject({ ran: true, connected: false });

    let lines: Line[] = [];
    const took = await eventually("vma1's allowed and refused connections in netfleet audit", 30_000, async () => {
      lines = (await audit("vma1")).records;
      return lines.some((l) => l.verdict === "allow" && l.dst === allowedWeb) && lines.some((l) => l.verdict === "drop" && l.dst === otherWeb);
    });
    process.stderr.write(`audit lines visible through netfleet audit ${took} ms after polling began (${Date.now() - t0} ms after the first connection)\n`);
    const allowed = lines.find((l) => l.verdict === "allow" && l.dst === allowedWeb)!;
    expect(allowed).toMatchObject({ direction: "out", src: vm("vma1").ip, proto: "tcp", dport: 80, network: "secure", host: backend().name, mac: vm("vma1").mac.toLowerCase() });
    const dropped = lines.find((l) => l.verdict === "drop" && l.dst === otherWeb)!;
    expect(dropped).toMatchObject({ direction: "out", src: vm("vma1").ip, proto: "tcp", dport: 80, network: "secure" });
    expect(Date.parse(allowed.time)).toBeGreaterThanOrEqual(t0 - 5000);
    expect(Date.parse(allowed.time)).toBeLessThanOrEqual(Date.parse(dropped.time));
    // Not vma1's: vmb4's refused connection.
    expect(lines.some((l) => l.dport === 8080)).toBe(false);

    // vmb4 has no static address: its lease names it, and its refused connection is its line.
    const lease = vm("vmb4").lease?.ip;
    expect(lease).toBeDefined();
    let dhcpVm = await audit("vmb4");
    await eventually("vmb4's refused connection in netfleet audit vmb4", 20_000, async () => {
      dhcpVm = await audit("vmb4");
      return dhcpVm.records.some((l) => l.verdict === "drop" && l.dport === 8080 && l.src === lease && l.dst === allowedWeb && l.direction === "out");
    });
    expect(dhcpVm.nics[0]!.addresses).toContain(lease);
    expect(dhcpVm.records.some((l) => l.dst === otherWeb)).toBe(false);

    // The human form: one line each, newest last.
    const text = await runner.run(read(...controllerCommand(readLabState(lab.runDir)!.topology, lab, ["audit", "vma1", inventoryDir, "--since", "15m"])));
    const out = text.stdout.split("\n").filter(Boolean);
    expect(out.some((l) => / {2}reached {2}out {2}tcp {5}\S+ -> \S+:80 {2}\(secure at /.test(l) && l.includes(`-> ${allowedWeb}:80`))).toBe(true);
    expect(out.some((l) => l.includes("refused") && l.includes(`${otherWeb}:80`))).toBe(true);
    expect(out.at(-1)).toMatch(/^\d+ reached, \d+ refused$/);

    // An open network audits too, and the line says what happened: vma2 (service, egress open) to the
    // other web server (in the lab it sits in the backend's external subnet, which open egress never
    // reaches: then a refused line; were it reached, a reached line).
    const open = await tcpConnect(runner, vm("vma2").namespace, otherWeb, 80, { timeoutMs: 1500 });
    expect(open.ran).toBe(true);
    const verdict = open.ran && open.connected ? "allow" : "drop";
    process.stderr.write(`vma2 -> ${otherWeb}:80 ${verdict === "allow" ? "connected" : "not connected"}\n`);
    await eventually(`vma2's connection (${verdict}) in netfleet audit vma2`, 30_000, async () =>
      (await audit("vma2")).records.some((l) => l.verdict === verdict && l.dst === otherWeb && l.dport === 80 && l.network === "service" && l.src === vm("vma2").ip),
    );
    expect((await audit("vma2")).records.some((l) => l.verdict !== verdict && l.dst === otherWeb)).toBe(false);
  });

  it("a backend agent killed outright leaves its capture behind; the next agent stops that one (our marked pid) and audits again", async () => {
    const h = backend();
    const marker = captureMarker(h.agentDir, 1081);
    expect(existsSync(marker)).toBe(true);
    const orphan = Number(readFileSync(marker, "utf8").trim());
    const cmdline = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      } catch {
        return "";
      }
    };
    expect(cmdline(orphan)).toMatch(/^tcpdump -i nflog:1081 /);
    const agentPid = Number(readFileSync(join(h.agentDir, "agent.pid"), "utf8").trim());
    process.kill(agentPid, "SIGKILL");
    await eventually("the agent gone", 10_000, async () => cmdline(agentPid) === "");
    expect(cmdline(orphan)).toMatch(/^tcpdump -i nflog:1081 /); // left behind, holding group 1081
    const logFile = join(h.agentDir, "agent.log");
    const mark = readFileSync(logFile, "utf8").length;
    labStartAgent(lab, h.name);
    const took = await eventually("the new agent stopped the left-behind capture and started its own", 60_000, async () => {
      const events = readFileSync(logFile, "utf8").slice(mark).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
      return events.some((e) => e.event === "audit-capture-orphan-stopped" && e.pid === orphan) && events.some((e) => e.event === "audit-capture-start" && e.group === 1081);
    });
    process.stderr.write(`restarted agent took over nflog group 1081 ${took} ms after its start\n`);
    expect(cmdline(orphan)).toBe("");
    // And it audits: a new connection of vma1 after the restart is a line.
    const after = new Date().toISOString();
    expect(await tcpConnect(runner, vm("vma1").namespace, "198.51.100.10", 80)).toMatchObject({ ran: true, connected: true });
    await eventually("vma1's connection after the restart in netfleet audit", 60_000, async () =>
      (await audit("vma1")).records.some((l) => l.verdict === "allow" && l.dst === "198.51.100.10" && l.time >= after),
    );
  });
});
