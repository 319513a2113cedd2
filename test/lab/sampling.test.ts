/**
 * sFlow and IPFIX export in the lab (issue 17 point 4): one lab (prefix smp,
 * /tmp/smp-lab) of inventories/lab, built without sampling. The test adds a
 * collector machine: namespace smp-col on the lab's management network
 * (a veth into the switch's mgmt0 bridge) at 10.99.0.250, running Debian's
 * pmacct collectors, sfacctd on udp/6343 and nfacctd on udp/4739, each
 * writing what it decodes as JSON lines (print plugin; sfacctd's counter
 * file). Then the rows roll out, through the lab's own controller:
 * - the folder with `site.sflow` (10.99.0.250, the default port; sampling 1,
 *   polling 2 s) and `site.ipfix` (10.99.0.250:4739, sampling 1): each
 *   vmhost's bridges (br-uplink and the VM bridges) reference one sFlow and
 *   one IPFIX row marked ours, the backend none;
 * - a VM on hosta (vma1) and one on hostb (vmb1) ping their gateway 10
 *   times: the collector files exactly 10 sampled requests (sampling 1: each
 *   frame once) whose agent address is the VM's host's management address
 *   and whose input interface is the ifindex OVS reports for the VM's port
 *   (Interface `ifindex`, ovs-vswitchd.conf.db(5)), and exactly 10 sampled
 *   replies, which enter the host at its uplink: input interface the
 *   ifindex of a bond member (OVS samples a frame on the bridge where it
 *   enters, patch ports included); counter samples of the VM port's
 *   ifindex; IPFIX records from that host with the VM's MAC and the same
 *   ingress interface;
 * - the folder alone again: the rows are pruned, and the collector hears
 *   nothing more of a VM's new pings (the same pings, samples counted before,
 *   are the positive control).
 * The collector starts before the row exists: OVS sends the IPFIX templates
 * with its first records and then every 600 s only (RFC 7011 10.3.6 over
 * UDP), so a collector started later decodes nothing for that long.
 * Needs root and the packages of scripts/setup.sh (pmacct).
 */
import { execa, type ResultPromise } from "execa";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { labDown, labRollout, labUp, readLabState, type LabHost, type LabOptions, type LabStatus, type LabVm } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const base = mkdtempSync(join(tmpdir(), "smp-base-"));
cpSync(join(repoRoot, "inventories", "lab"), base, { recursive: true });
const withSampling = mkdtempSync(join(tmpdir(), "smp-on-"));
cpSync(base, withSampling, { recursive: true });
{
  const file = join(withSampling, "site.yaml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["site", "sflow"], { collectors: ["10.99.0.250"], sampling: 1, polling: 2 });
  doc.setIn(["site", "ipfix"], { collectors: ["10.99.0.250:4739"], sampling: 1 });
  writeFileSync(file, doc.toString());
}
const lab: LabOptions = { inventoryDir: base, prefix: "smp", runDir: "/tmp/smp-lab", repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot };
const runner = new ExecaRunner({ timeoutMs: 30_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The collector machine: its namespace (prefix smp: labDown removes it too), link and address. */
const COL = { ns: "smp-col", switchIf: "smpcol0", ifname: "col0", address: "10.99.0.250", prefix: 24 };
const work = mkdtempSync(join(tmpdir(), "smp-col-"));
const files = { sflow: join(work, "sflow-flows.json"), counters: join(work, "sflow-counters.json"), ipfix: join(work, "ipfix-flows.json") };

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}
async function must(argv: string[]): Promise<string> {
  const r = await sh(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}
/** A host's management address without its prefix length (LabHost has a.b.c.d/len). */
const addressOf = (h: LabHost) => h.mgmtAddress!.split("/")[0]!;
const vsctl = (h: LabHost, ...args: string[]) => must(["ip", "netns", "exec", h.namespace, "ovs-vsctl", `--db=unix:${h.ovsDb}`, "--timeout=10", ...args]);

/** Polls until `check` holds; every wait here is bounded. */
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(250);
  }
}

/** A pmacct JSON output file as records (lines written so far). */
function records(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim().startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** sfacctd / nfacctd configuration: listen on the collector's address, aggregate per agent, interfaces, MACs and IPs, print JSON lines every second. */
function pmacctConfig(daemon: "sfacctd" | "nfacctd", port: number, out: string, extra: string[] = []): string {
  return [
    "daemonize: false",
    `${daemon}_ip: ${COL.address}`,
    `${daemon}_port: ${port}`,
    "plugins: print[flows]",
    "aggregate[flows]: peer_src_ip, in_iface, out_iface, src_mac, dst_mac, src_host, dst_host",
    "print_output[flows]: json",
    `print_output_file[flows]: ${out}`,
    "print_output_file_append[flows]: true",
    "print_refresh_time[flows]: 1",
    ...extra,
    "",
  ].join("\n");
}

/** The collectors this file started, stopped by pid in afterAll (pmacct stops on SIGINT). */
const collectors: ResultPromise[] = [];
function startCollector(daemon: "sfacctd" | "nfacctd", conf: string): ResultPromise {
  const path = join(work, `${daemon}.conf`);
  writeFileSync(path, conf);
  const p = execa("ip", ["netns", "exec", COL.ns, daemon, "-f", path], { reject: false, all: true, timeout: 1_800_000, killSignal: "SIGINT" });
  collectors.push(p);
  return p;
}

/** A collector's output so far, for waiting on its "waiting for ... data" line. */
const logs = new Map<ResultPromise, string>();
function follow(p: ResultPromise): void {
  logs.set(p, "");
  p.all?.on("data", (d: Buffer) => logs.set(p, logs.get(p)! + d.toString()));
}

async function pingGateway(vm: LabVm, gateway: string, count: number): Promise<number> {
  const r = await sh(["ip", "netns", "exec", vm.namespace, "ping", "-n", "-q", "-c", String(count), "-i", "0.1", "-W", "1", gateway]);
  const m = /(\d+) received/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

describe.skipIf(!isRoot)("lab: sFlow and IPFIX to a site collector", () => {
  let status: LabStatus;
  let hosts: Record<string, LabHost>;
  let vms: Record<string, LabVm>;
  const gateway = "10.81.0.1";
  /** The ifindex OVS reports for each VM's port, read where its agent runs. */
  const ifindex: Record<string, number> = {};
  /** The ifindexes OVS reports for each vmhost's uplink members (eth0, eth1). */
  const uplinkIfindex: Record<string, number[]> = {};

  beforeAll(async () => {
    await labDown(lab);
    status = await labUp(lab, (line) => process.stderr.write(`[smp] ${line}\n`));
    expect(status.problems ?? []).toEqual([]);
    hosts = Object.fromEntries(status.hosts.map((h) => [h.name, h]));
    vms = Object.fromEntries(status.vms.filter((v) => v.kind === "namespace").map((v) => [v.name, v]));
    const topo = readLabState(lab.runDir)!.topology;
    await must(["ip", "netns", "add", COL.ns]);
    await must(["ip", "-n", topo.switchNs, "link", "add", COL.switchIf, "type", "veth", "peer", "name", COL.ifname, "netns", COL.ns]);
    await must(["ip", "-n", topo.switchNs, "link", "set", COL.switchIf, "master", topo.mgmtBridge, "up"]);
    await must(["ip", "-n", COL.ns, "addr", "add", `${COL.address}/${COL.prefix}`, "dev", COL.ifname]);
    await must(["ip", "-n", COL.ns, "link", "set", COL.ifname, "up"]);
    await must(["ip", "-n", COL.ns, "link", "set", "lo", "up"]);
    const sf = startCollector("sfacctd", pmacctConfig("sfacctd", 6343, files.sflow, [`sfacctd_counter_file: ${files.counters}`, "sfacctd_counter_output: json"]));
    const nf = startCollector("nfacctd", pmacctConfig("nfacctd", 4739, files.ipfix));
    follow(sf);
    follow(nf);
    await eventually("sfacctd and nfacctd listening", 20_000, () => (/waiting for sFlow data/.test(logs.get(sf)!) && /waiting for NetFlow\/IPFIX data/.test(logs.get(nf)!) ? true : undefined));
    const r = await labRollout(lab, withSampling, { onLine: (l) => process.stderr.write(`[smp] ${l}\n`) });
    expect(r.exitCode, r.stderr.join("\n")).toBe(0);
    for (const name of ["vma1", "vmb1"]) {
      const vm = vms[name]!;
      ifindex[name] = Number((await vsctl(hosts[vm.host]!, "get", "Interface", vm.hostPort, "ifindex")).trim());
    }
    for (const h of ["hosta", "hostb"]) {
      uplinkIfindex[h] = await Promise.all(["eth0", "eth1"].map(async (m) => Number((await vsctl(hosts[h]!, "get", "Interface", m, "ifindex")).trim())));
    }
  }, 900_000);

  afterAll(async () => {
    for (const p of collectors) p.kill("SIGINT");
    await Promise.all(collectors.map(async (p) => {
      const t = setTimeout(() => p.kill("SIGKILL"), 5_000);
      await p.catch(() => undefined);
      clearTimeout(t);
    }));
    await sh(["ip", "netns", "del", COL.ns]);
    await labDown(lab);
    for (const d of [base, withSampling, work]) rmSync(d, { recursive: true, force: true });
  }, 120_000);

  it("each vmhost's bridges (trunk and VM bridges) reference one sFlow and one IPFIX row marked ours (agent = the host's address); the backend has none", async () => {
    for (const h of ["hosta", "hostb"]) {
      const host = hosts[h]!;
      for (const br of ["br-uplink", "br-secure", "br-service", "br-datain"]) {
        const sflow = (await vsctl(host, "get", "Bridge", br, "sflow")).trim();
        const ipfix = (await vsctl(host, "get", "Bridge", br, "ipfix")).trim();
        expect(sflow).toMatch(/^[0-9a-f-]{36}$/);
        expect(ipfix).toMatch(/^[0-9a-f-]{36}$/);
        expect((await vsctl(host, "get", "sFlow", sflow, "agent", "targets", "sampling", "polling", "external_ids:netfleet-owner")).trim().split("\n")).toEqual([`"${addressOf(host)}"`, '["10.99.0.250:6343"]', "1", "2", "lab"]);
        expect((await vsctl(host, "get", "IPFIX", ipfix, "targets", "sampling", "external_ids:netfleet-owner")).trim().split("\n")).toEqual(['["10.99.0.250:4739"]', "1", "lab"]);
      }
    }
    expect((await vsctl(hosts.backend!, "--format=json", "list", "sFlow")).includes('"data":[]')).toBe(true);
    expect((await vsctl(hosts.backend!, "--format=json", "list", "IPFIX")).includes('"data":[]')).toBe(true);
  });

  it("sFlow: each frame sampled once: a VM's requests under its host's agent address with its port's ifindex, the replies at the uplink member's; counter samples of the VM port's ifindex", async () => {
    for (const name of ["vma1", "vmb1"]) {
      const vm = vms[name]!;
      const agent = addressOf(hosts[vm.host]!);
      expect(ifindex[name]).toBeGreaterThan(0);
      const sent = (r: Record<string, unknown>) => r.mac_src === vm.mac && r.ip_dst === gateway;
      const got = (r: Record<string, unknown>) => r.mac_dst === vm.mac && r.ip_src === gateway && r.ip_dst === vm.ip;
      const packets = (f: (r: Record<string, unknown>) => boolean) => records(files.sflow).filter(f).reduce((n, r) => n + Number(r.packets), 0);
      const [sent0, got0] = [packets(sent), packets(got)];
      expect(await pingGateway(vm, gateway, 10)).toBe(10);
      await eventually(`10 sampled echo requests and 10 replies of ${name}`, 20_000, () => (packets(sent) >= sent0 + 10 && packets(got) >= got0 + 10 ? true : undefined));
      await sleep(2_500); // anything sampled twice would be printed by now (refresh 1 s)
      expect([packets(sent) - sent0, packets(got) - got0]).toEqual([10, 10]);
      const requests = records(files.sflow).filter(sent);
      const replies = records(files.sflow).filter(got);
      expect(new Set(requests.map((r) => `${r.peer_ip_src} ${r.iface_in}`))).toEqual(new Set([`${agent} ${ifindex[name]}`]));
      expect(replies.every((r) => r.peer_ip_src === agent && uplinkIfindex[vm.host]!.includes(Number(r.iface_in)))).toBe(true);
      const counters = await eventually(`counter samples of ifIndex ${ifindex[name]} from ${agent}`, 20_000, () =>
        records(files.counters).find((r) => r.peer_ip_src === agent && r.sf_cnt_type === "sflow_cnt_generic" && r.ifIndex === ifindex[name] && Number(r.ifInUcastPkts) > 0),
      );
      expect(counters.ifIndex).toBe(ifindex[name]);
    }
  });

  it("IPFIX: records of each VM's frames come from its host's address with its MAC and the same ingress interface", async () => {
    for (const name of ["vma1", "vmb1"]) {
      const vm = vms[name]!;
      const exporter = addressOf(hosts[vm.host]!);
      expect(await pingGateway(vm, gateway, 10)).toBe(10);
      const rec = await eventually(`an IPFIX record of ${name} from ${exporter}`, 20_000, () =>
        records(files.ipfix).find((r) => r.mac_src === vm.mac && r.ip_dst === gateway && r.peer_ip_src === exporter && r.iface_in === ifindex[name]),
      );
      expect(rec.ip_src).toBe(vm.ip);
    }
  });

  it("rolled back to the folder without sampling: the rows are pruned and a VM's new pings reach the collector no more", async () => {
    const vm = vms.vma1!;
    const mine = () => [...records(files.sflow), ...records(files.ipfix)].filter((r) => r.mac_src === vm.mac).reduce((n, r) => n + Number(r.packets ?? 0), 0);
    // Positive control: with the rows, 10 pings raise the sampled packets of vma1 (sampling 1: every frame).
    const before = mine();
    expect(await pingGateway(vm, gateway, 10)).toBe(10);
    await eventually("vma1's pings sampled", 20_000, () => (mine() >= before + 20 ? true : undefined));
    const r = await labRollout(lab, base, { onLine: (l) => process.stderr.write(`[smp] ${l}\n`) });
    expect(r.exitCode, r.stderr.join("\n")).toBe(0);
    for (const h of ["hosta", "hostb"]) {
      expect((await vsctl(hosts[h]!, "--format=json", "list", "sFlow")).includes('"data":[]')).toBe(true);
      expect((await vsctl(hosts[h]!, "--format=json", "list", "IPFIX")).includes('"data":[]')).toBe(true);
      expect((await vsctl(hosts[h]!, "get", "Bridge", "br-secure", "sflow")).trim()).toBe("[]");
    }
    await sleep(3_000); // the collectors print what they hold every second
    const after = mine();
    expect(await pingGateway(vm, gateway, 10)).toBe(10);
    await sleep(4_000);
    expect(mine()).toBe(after);
  }, 600_000);
});
