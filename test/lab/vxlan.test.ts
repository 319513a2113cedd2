/**
 * VXLAN overlay in the lab: one lab (prefix vxl, /tmp/vxl-lab) of the site
 * test/lab/sites/vxlan, the lab site with every host in uplink mode vxlan:
 * no trunk links at all, each network a VXLAN segment (secure VNI 5081,
 * service 1082, datain 1083) between the hosts over the management network
 * (mgmt0), Linux vxlan devices vx-<network> as the VM bridges' uplink ports
 * on the userspace datapath and as the backend's gateway interfaces.
 * Proven here: the agents build the devices as the assignment says (VNI,
 * local address, port 4789, one flood entry per peer, MTU 1500 - 50); the
 * WHOLE connectivity matrix of lab.test.ts and the attack rows of
 * attack.test.ts pass unchanged (isolation, anti-spoofing, gateway rules),
 * each blocked row beside its positive control; a VM's frames to another
 * host cross the management link as VXLAN (UDP 4789) with their network's
 * VNI and nothing else; the MTU is accounted (a 1450-byte DF packet crosses,
 * the VM does not send a 1451-byte one); the VNI separates the segments: a
 * frame a real VTEP sends into another network's VNI does not reach the VM,
 * the same frame in its own VNI does; and (reviewer's F1) VXLAN from anyone
 * but a VTEP — the switch on the management network, the internet to the
 * backend's external address — reaches no VM and no gateway and teaches no
 * MAC (the devices are nolearning, each host's nft table per device drops
 * it: its counter counts them), while the same frames from a real VTEP
 * arrive (the control) and teach nothing either.
 * Needs root and the packages of scripts/setup.sh (tcpdump, scapy).
 */
import { execa } from "execa";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { loadInventory, VXLAN_UDP_PORT, vxlanInterfaceName, type Inventory } from "@netfleet/shared";
import { attackProbes, connectivityProbes, labAttack, labDown, labProcesses, labUp, namespacesWithPrefix, runProbes, type AttackRow, type CheckRow, type LabOptions, type LabStatus } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const lab: LabOptions = {
  inventoryDir: join(repoRoot, "test", "lab", "sites", "vxlan"),
  prefix: "vxl",
  runDir: "/tmp/vxl-lab",
  repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot,
};
const inventory: Inventory = loadInventory(lab.inventoryDir);
const runner = new ExecaRunner({ timeoutMs: 20_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

/** One ping with DF set and `size` bytes of ICMP payload (IP packet = size + 28). */
async function pingDf(namespace: string, address: string, size: number): Promise<boolean> {
  return (await sh(["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", String(size), address])).exitCode === 0;
}

/** One VXLAN frame: outer IPv4 src/dst (UDP to 4789), the VNI, the inner Ethernet and IPv4/UDP 9 carrying `marker`. */
interface VxlanFrame {
  src: string;
  dst: string;
  vni: number;
  smac: string;
  dmac: string;
  sip: string;
  dip: string;
  marker: string;
}

/**
 * Sends each frame 3 times (0.1 s apart) from namespace `ns` with scapy (one python process for all: its start
 * costs seconds, more than 20 on a loaded machine, so its bound is 120 s). Raw IP (`send`), so the outer source may be any address.
 */
async function injectVxlan(ns: string, frames: VxlanFrame[]): Promise<void> {
  const program = [
    "import json, sys; from scapy.all import Ether, IP, UDP, Raw, send, conf; from scapy.layers.vxlan import VXLAN; conf.verb = 0",
    "for f in json.loads(sys.argv[1]):",
    `    send(IP(src=f["src"], dst=f["dst"])/UDP(sport=40000, dport=${VXLAN_UDP_PORT})/VXLAN(vni=f["vni"], flags=0x08)/Ether(src=f["smac"], dst=f["dmac"])/IP(src=f["sip"], dst=f["dip"])/UDP(sport=40001, dport=9)/Raw(f["marker"].encode()), count=3, inter=0.1)`,
  ].join("\n");
  const r = await execa("ip", ["netns", "exec", ns, "/usr/bin/python3", "-c", program, JSON.stringify(frames)], { reject: false, timeout: 120_000 });
  expect(r.exitCode, String(r.stderr)).toBe(0);
}

/**
 * What tcpdump (`udp port 9`, payload as text) saw on each target while `act` ran: each capture is awaited until it
 * says it listens (at most 30 s), bounded (180 s) and stopped by its own process.
 */
async function captureWhile(targets: { ns: string; dev: string }[], act: () => Promise<unknown>): Promise<string[]> {
  const caps = targets.map((t) => {
    const p = execa("ip", ["netns", "exec", t.ns, "tcpdump", "-l", "-n", "-A", "-i", t.dev, "udp port 9"], { reject: false, timeout: 180_000 });
    const listening = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 30_000);
      p.stderr?.on("data", (d: Buffer) => {
        if (String(d).includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return { p, listening };
  });
  try {
    await Promise.all(caps.map((c) => c.listening));
    await act();
    await sleep(1500);
  } finally {
    for (const c of caps) c.p.kill("SIGINT");
  }
  return Promise.all(caps.map(async (c) => String((await c.p).stdout)));
}

describe.skipIf(!isRoot)("vxlan overlay lab (prefix vxl, /tmp/vxl-lab)", () => {
  let status: LabStatus;
  const timings: Record<string, number> = {};
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const hostNs = (name: string) => `${lab.prefix}-${name}`;

  beforeAll(async () => {
    await labDown(lab); // leftovers of an interrupted run
    const t = performance.now();
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    timings.up = performance.now() - t;
  }, 900_000);

  afterAll(async () => {
    await labDown(lab);
    process.stderr.write(`vxlan lab timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}\n`);
    expect(namespacesWithPrefix(lab.prefix)).toEqual([]);
    expect(labProcesses({ netnsInodes: new Set(), runDir: lab.runDir })).toEqual([]);
  }, 60_000);

  it("is up with every host in mode vxlan: no trunk link, one vxlan device per network as the assignment says", async () => {
    expect(status.problems ?? []).toEqual([]);
    expect(status.up).toBe(true);
    expect(inventory.hosts.map((h) => h.uplink.mode)).toEqual(["vxlan", "vxlan", "vxlan"]);
    for (const h of inventory.hosts) {
      const links = JSON.parse((await sh(["ip", "-n", hostNs(h.name), "-d", "-j", "link", "show"])).stdout) as { ifname: string; mtu: number; ifalias?: string; flags: string[]; linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number } } }[];
      // no trunk: the host's only links are lo, mgmt0, (wan0,) VM ports and what netfleet made
      expect(links.map((l) => l.ifname).filter((n) => /^eth\d/.test(n)), h.name).toEqual([]);
      for (const n of inventory.networks.filter((x) => h.networks.includes(x.name))) {
        const dev = links.find((l) => l.ifname === vxlanInterfaceName(n.name));
        expect(dev, `${h.name} ${n.name}`).toBeDefined();
        expect(dev!.linkinfo?.info_kind).toBe("vxlan");
        expect(dev!.linkinfo?.info_data).toMatchObject({ id: n.vni, local: h.address, port: VXLAN_UDP_PORT });
        expect([dev!.mtu, dev!.ifalias, dev!.flags.includes("UP")], `${h.name} ${n.name}`).toEqual([1450, "netfleet-owner=vxl", true]);
        const peers = inventory.hosts.filter((p) => p.name !== h.name && (p.role === "backend" || p.networks.includes(n.name))).map((p) => p.address).sort();
        const fdb = JSON.parse((await sh(["ip", "netns", "exec", hostNs(h.name), "bridge", "-j", "fdb", "show", "dev", dev!.ifname])).stdout) as { mac: string; dst?: string; state?: string }[];
        expect(fdb.filter((e) => e.mac === "00:00:00:00:00:00" && e.state === "permanent").map((e) => e.dst).sort(), `${h.name} ${n.name} flood list`).toEqual(peers);
      }
    }
    expect(inventory.networks.map((n) => [n.name, n.vni, n.mtu])).toEqual([
      ["datain", 1083, 1450],
      ["secure", 5081, 1450],
      ["service", 1082, 1450],
    ]);
    expect(status.gateways?.find((g) => g.network === "secure")).toMatchObject({ ip: "10.81.0.1", interface: "vx-secure", namespace: "vxl-backend" });
  });

  it("the whole connectivity matrix passes as on the VLAN lab", async () => {
    const t = performance.now();
    const rows: CheckRow[] = await runProbes(connectivityProbes(inventory, status));
    timings.check = performance.now() - t;
    const failed = rows.filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    const has = (check: RegExp, from: string | RegExp, to: RegExp, got: string) =>
      expect(rows.some((r) => check.test(r.check) && (typeof from === "string" ? r.from === from : from.test(r.from)) && to.test(r.to) && r.got === got), `${check} ${from} -> ${to}: ${got}`).toBe(true);
    const vmsIn = (net: string) => status.vms.filter((v) => v.kind !== "domain" && v.network === net && v.ip).map((v) => v.name);
    const names = (list: string[]) => new RegExp(`^(${list.join("|")})$`);
    has(/^same-network \(across hosts\)$/, "vma1", /^vmb1$/, "reach");
    has(/^isolated port \(same host\)$/, "vma3", /^vma1$/, "blocked");
    has(/^gateway$/, "vma3", /^gw-secure$/, "reach");
    for (const members of inventory.networks.flatMap((n) => Object.values(n.cluster_groups))) {
      if (members.length > 1) has(/^cluster group/, names(members), names(members), "reach");
    }
    const nets = inventory.networks.map((n) => n.name).filter((n) => vmsIn(n).length > 0);
    for (const x of nets) {
      for (const y of nets.filter((n) => n !== x)) {
        has(/^vlans apart/, names(vmsIn(x)), names(vmsIn(y)), "blocked");
        has(/^networks apart \(routed\)$/, names(vmsIn(x)), names(vmsIn(y)), "blocked");
        has(/^only its own gateway$/, names(vmsIn(x)), new RegExp(`^gw-${y}$`), "blocked");
      }
    }
    expect(rows.filter((r) => /^vlans apart \(across hosts\)$/.test(r.check)).length).toBeGreaterThan(0);
    has(/^anti-spoofing \(own address\)$/, "vma1", /./, "reach");
    has(/^anti-spoofing \(source IP\)$/, "vma1", /./, "blocked");
    has(/^anti-spoofing \(source MAC\)$/, "vma1", /./, "blocked");
    for (const v of status.vms.filter((x) => x.kind !== "domain")) has(/^dhcp lease$/, v.name, /./, "lease");
    has(/^dns \(vm names\)$/, "vma1", /^vmb1\.secure\.lab\.test$/, "resolve");
    has(/^egress \(allowlist\)$/, "vma1", /^198\.51\.100\.10:80$/, "masqueraded");
    has(/^egress \(allowlist\)$/, "vma1", /^198\.51\.100\.20:80$/, "blocked");
    has(/^egress \(open\)$/, "vma2", /^198\.51\.100\.20:80$/, "masqueraded");
    process.stderr.write(`vxlan connectivity matrix: ${rows.length} rows, ${rows.filter((r) => r.ok).length} as expected\n`);
  }, 600_000);

  it("the attack rows pass as on the VLAN lab, each blocked row beside its positive control", async () => {
    const probes = attackProbes(inventory, status);
    const t = performance.now();
    const rows: AttackRow[] = await labAttack(inventory, status);
    timings.attack = performance.now() - t;
    const failed = rows.filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    expect(rows.length).toBeGreaterThanOrEqual(25);
    for (const p of probes.filter((x) => x.expect === "dropped")) expect(p.controls.length, `${p.check} ${p.from} -> ${p.to}`).toBeGreaterThan(0);
    const has = (check: RegExp, from: string, expect_: AttackRow["expect"]) =>
      expect(rows.some((r) => check.test(r.check) && r.from === from && r.expect === expect_ && r.ok), `${check} from ${from}: ${expect_}`).toBe(true);
    has(/^ip spoofing \(static VM\)$/, "vma1", "dropped");
    has(/^ip spoofing \(DHCP VM\)$/, "vmb4", "dropped");
    has(/^mac spoofing$/, "x-hosta", "dropped");
    has(/^rogue dhcp offer/, "vma1", "dropped");
    has(/^isolated to isolated \(across hosts\)$/, "vma4", "dropped");
    has(/^cluster group member to member \(across hosts\)$/, "vma3", "delivered");
    has(/^unknown unicast flood to isolated$/, "vma1", "dropped");
    process.stderr.write(`vxlan attack rows: ${rows.length}, ${rows.filter((r) => r.ok).length} as expected\n`);
  }, 600_000);

  it("frames between hosts cross the management link as VXLAN (UDP 4789) with their network's VNI, never bare", async () => {
    const secure = inventory.networks.find((n) => n.name === "secure")!;
    // hosta's management link as the switch sees it: VXLAN packets, decoded by tcpdump (-T vxlan)
    const cap = execa("ip", ["netns", "exec", "vxl-sw", "tcpdump", "-l", "-n", "-e", "-c", "4", "-i", "h1-m", "-T", "vxlan", `udp port ${VXLAN_UDP_PORT}`], { reject: false, timeout: 8000 });
    const bare = execa("ip", ["netns", "exec", "vxl-sw", "tcpdump", "-l", "-n", "-c", "1", "-i", "h1-m", "icmp and host", vm("vmb1").ip!], { reject: false, timeout: 8000 });
    await sleep(700);
    expect(await pingDf("vxl-vma1", vm("vmb1").ip!, 56)).toBe(true);
    await sleep(300);
    cap.kill("SIGINT");
    bare.kill("SIGINT");
    // tcpdump prints each VXLAN packet on two lines: the outer header (UDP 4789, the VNI), then the inner frame
    const out = String((await cap).stdout).split("\n");
    const inner = out.flatMap((l, i) => (l.includes("ICMP echo") ? [{ outer: out[i - 1] ?? "", inner: l }] : []));
    expect(inner.length, out.join("\n")).toBeGreaterThan(0);
    for (const f of inner) {
      expect(f.outer).toMatch(new RegExp(`10\\.99\\.0\\.\\d+\\.\\d+ > 10\\.99\\.0\\.\\d+\\.${VXLAN_UDP_PORT}: VXLAN, flags \\[I\\] \\(0x08\\), vni ${secure.vni}\\b`));
      expect(f.inner).toMatch(/^\s*52:54:00:81:0(a:01 > 52:54:00:81:0b:01|b:01 > 52:54:00:81:0a:01), ethertype IPv4/);
    }
    expect(String((await bare).stdout).split("\n").filter((l) => l.includes("ICMP")), "no bare ICMP between the VMs on the management link").toEqual([]);
  }, 30_000);

  it("the VNI separates the segments: a frame for vma1 sent by a real VTEP (hostb) into VNI 1082 (service) never reaches it; the same frame in VNI 5081 (its own) does", async () => {
    // hostb carries both networks, so its frames pass hosta's source filter: what keeps this one out is the VNI.
    const seen = async (vni: number, marker: string) => {
      const got = await captureWhile([{ ns: "vxl-vma1", dev: "eth0" }], () =>
        injectVxlan(hostNs("hostb"), [{ src: "10.99.0.2", dst: "10.99.0.1", vni, smac: "52:54:00:fd:99:99", dmac: vm("vma1").mac, sip: vm("vmb1").ip!, dip: vm("vma1").ip!, marker }]),
      );
      return got[0]!.includes(marker);
    };
    expect(await seen(1082, "nf-wrong-vni"), "a frame in service's VNI reached vma1 (secure)").toBe(false);
    expect(await seen(5081, "nf-own-vni"), "control: the frame in secure's own VNI").toBe(true);
  }, 300_000);

  it("F1: VXLAN from the underlay but from no VTEP (the switch, 10.99.0.254; the internet, to the backend's wan address) reaches no VM and no gateway and teaches no MAC; the same frames from a real VTEP (hostb, 10.99.0.2) are delivered and teach nothing either", async () => {
    const secure = inventory.networks.find((n) => n.name === "secure")!;
    const gwMac = "02:4e:46:00:04:39"; // gatewayMac(1081)
    const inet = status.inet!;
    // Each batch: unicast to vma1 and broadcast into secure on hosta; unicast to the gateway and broadcast on the backend.
    const frames = (src: string, smac: string, tag: string, backend = "10.99.0.3") => [
      { src, dst: "10.99.0.1", vni: secure.vni, smac, dmac: vm("vma1").mac, sip: "10.81.0.99", dip: vm("vma1").ip!, marker: `${tag}-vm-uni` },
      { src, dst: "10.99.0.1", vni: secure.vni, smac, dmac: "ff:ff:ff:ff:ff:ff", sip: "10.81.0.99", dip: "10.81.0.255", marker: `${tag}-vm-bcast` },
      { src, dst: backend, vni: secure.vni, smac, dmac: gwMac, sip: "10.81.0.99", dip: secure.gateway, marker: `${tag}-gw-uni` },
      { src, dst: backend, vni: secure.vni, smac, dmac: "ff:ff:ff:ff:ff:ff", sip: "10.81.0.99", dip: "10.81.0.255", marker: `${tag}-gw-bcast` },
    ];
    const targets = [{ ns: "vxl-vma1", dev: "eth0" }, { ns: "vxl-backend", dev: "vx-secure" }];
    const learned = async (mac: string) => {
      const out: string[] = [];
      for (const h of ["hosta", "backend"]) {
        const fdb = JSON.parse((await sh(["ip", "netns", "exec", hostNs(h), "bridge", "-j", "fdb", "show", "dev", "vx-secure"])).stdout) as { mac: string; dst?: string }[];
        out.push(...fdb.filter((e) => e.mac === mac).map((e) => `${h}: ${e.mac} dst ${e.dst}`));
      }
      return out;
    };
    const dropped = async () => {
      const counts: Record<string, number> = {};
      for (const h of ["hosta", "backend"]) {
        const t = (await sh(["ip", "netns", "exec", hostNs(h), "nft", "list", "table", "inet", "netfleet-vx-secure"])).stdout;
        counts[h] = Number(/counter packets (\d+)/.exec(t)?.[1] ?? -1);
      }
      return counts;
    };
    // the internet's own address on the backend's external link (the inet namespace's default-route side)
    const inetAddrs = JSON.parse((await sh(["ip", "-n", inet.namespace, "-4", "-j", "addr", "show"])).stdout) as { addr_info: { local: string }[] }[];
    const inetAddress = inetAddrs.flatMap((l) => l.addr_info.map((a) => a.local)).find((a) => a.startsWith(inet.backendAddress.replace(/\.\d+$/, ".")) && a !== inet.backendAddress)!;
    expect(inetAddress).toBeDefined();
    const before = await dropped();
    const t = performance.now();
    // the attack: from the switch (on the underlay, no VTEP) and from the internet to the backend's external address
    const attack = await captureWhile(targets, async () => {
      await injectVxlan("vxl-sw", frames("10.99.0.254", "52:54:00:fd:f1:01", "nf-f1-sw"));
      await injectVxlan(inet.namespace, frames(inetAddress, "52:54:00:fd:f1:02", "nf-f1-wan", inet.backendAddress).slice(2));
    });
    const after = await dropped();
    // the control: the same frames from hostb's own underlay address
    const control = await captureWhile(targets, () => injectVxlan(hostNs("hostb"), frames("10.99.0.2", "52:54:00:fd:f1:03", "nf-f1-vtep")));
    timings.f1 = performance.now() - t;
    const markers = (text: string) => [...new Set(text.match(/nf-f1-[a-z]+-[a-z]+-[a-z]+/g) ?? [])].sort();
    process.stderr.write(`vxlan F1: attack seen ${JSON.stringify(attack.map(markers))}, control seen ${JSON.stringify(control.map(markers))}, filter drops ${JSON.stringify(before)} -> ${JSON.stringify(after)}\n`);
    expect(attack.map(markers), "no frame from a non-VTEP reached vma1 or the backend's vx-secure").toEqual([[], []]);
    expect(control.map(markers), "control: the VTEP's frames arrive").toEqual([
      ["nf-f1-vtep-vm-bcast", "nf-f1-vtep-vm-uni"],
      ["nf-f1-vtep-gw-bcast", "nf-f1-vtep-gw-uni"],
    ]);
    // the attack's packets did arrive at the hosts: their filters dropped them (3 copies of each frame)
    expect(after.hosta! - before.hosta!, "hosta's filter drops").toBeGreaterThanOrEqual(6);
    expect(after.backend! - before.backend!, "backend's filter drops").toBeGreaterThanOrEqual(12);
    expect([...(await learned("52:54:00:fd:f1:01")), ...(await learned("52:54:00:fd:f1:02")), ...(await learned("52:54:00:fd:f1:03"))], "no MAC learned, not even from a VTEP").toEqual([]);
    for (const h of ["hosta", "hostb", "backend"]) {
      const dev = JSON.parse((await sh(["ip", "-n", hostNs(h), "-d", "-j", "link", "show", "dev", "vx-secure"])).stdout) as { linkinfo: { info_data: { learning?: boolean } } }[];
      expect(dev[0]!.linkinfo.info_data.learning, `${h} vx-secure learning`).toBe(false);
    }
  }, 600_000);

  it("MTU accounted: a 1450-byte packet with DF crosses between hosts, a 1451-byte one is not sent", async () => {
    // 1422 bytes of payload + 8 ICMP + 20 IP = 1450; the underlay carries 1450 + 50 = 1500
    expect(await pingDf("vxl-vma1", vm("vmb1").ip!, 1422)).toBe(true);
    expect(await pingDf("vxl-vma1", vm("vmb1").ip!, 1423)).toBe(false);
  }, 30_000);
});
