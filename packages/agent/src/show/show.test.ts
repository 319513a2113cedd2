import { describe, expect, it, onTestFinished } from "vitest";
import { HostView, SHOW_LIMITS, ShowReply, encodeMessage } from "@netfleet/shared";
import { answerShow } from "../fleet/show.ts";
import { fixture } from "../resources/fixtures.ts";
import { showArgv } from "./read.ts";
import { loadCapture } from "./fixtures.ts";
import { readHost } from "./read.ts";
import { renderHostView } from "./render.ts";
import { buildHostView } from "./view.ts";
import { Toolbox } from "../tools.ts";
import type { RawObservation } from "./read.ts";

// Captures of the lab (netfleet-lab up, then netfleet-lab check for traffic; __fixtures__/capture.ts):
// hosta is a VM host (OVS bond uplink, three VM bridges with their rules, libvirt, leases copied from the
// backend, no nft table); backend is the gateway (dnsmasq leases, the nft table, no libvirtd). Their counter reads
// (ovsStats, bondShow) were added later from a lab of the same site (__fixtures__/augment.ts; reads.json `augmented`).
const hosta = loadCapture("hosta");
const backend = loadCapture("backend");

describe("show: reading a host", () => {
  it("runs only read-only commands, the capture's argv, and reads the lease files", async () => {
    const raw = await readHost({ host: "hosta", runner: hosta.runner, tools: hosta.tools, files: hosta.files, now: () => hosta.at });
    expect(raw).toEqual(hosta.raw);
    // 13 reads, and the counters' two (Interface statistics; bond/show, as OVS has a bond): __fixtures__/augment.ts.
    expect(hosta.runner.calls.length).toBe(15);
    expect(hosta.runner.mutatingCalls).toEqual([]);
    expect(hosta.runner.calls.map((c) => c.argv)).toContainEqual(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "unix:/tmp/nfs-lab/hosts/hosta/ovs/br-secure.mgmt"]);
    expect(Object.keys(raw.files)).toEqual([
      "/tmp/nfs-lab/hosts/hosta/agent/leases/datain.json",
      "/tmp/nfs-lab/hosts/hosta/agent/leases/secure.json",
      "/tmp/nfs-lab/hosts/hosta/agent/leases/service.json",
    ]);
  });

  it("a host without libvirtd: no per-network reads, the failure kept", async () => {
    const raw = await readHost({ host: "backend", runner: backend.runner, tools: backend.tools, files: backend.files, now: () => backend.at });
    expect(raw.netList.exitCode).toBe(1);
    expect(raw.netXml).toEqual({});
    expect(backend.runner.calls.length).toBe(9);
  });
});

describe("show: the view of a VM host (lab hosta)", () => {
  const view = buildHostView(hosta.raw);

  it("fits the wire schema, and nothing was left unread", () => {
    expect(HostView.parse(view)).toEqual(view);
    expect(view.problems).toEqual([]);
  });

  it("OVS bridges and ports as ovs-vsctl lists them: the bond and its trunks, the patch ports' VLAN tags", () => {
    const uplink = view.bridges!.find((b) => b.name === "br-uplink")!;
    const bond = uplink.ports.find((p) => p.name === "bond0")!;
    expect(bond).toMatchObject({ trunks: [1081, 1082, 1083], bondMode: "active-backup", lacp: "off" });
    expect(bond.interfaces.map((i) => i.name)).toEqual(["eth0", "eth1"]);
    expect(uplink.ports.filter((p) => p.tag !== undefined).map((p) => [p.name, p.tag])).toEqual([
      ["pu-datain", 1083],
      ["pu-secure", 1081],
      ["pu-service", 1082],
    ]);
    const secure = view.bridges!.find((b) => b.name === "br-secure")!;
    expect(secure).toMatchObject({ failMode: "secure", owner: "lab", datapath: "netdev" });
    expect(secure.flows).toHaveLength(51);
  });

  it("each VM port's policy from its rules: the sources it may use, isolation, packets passed and dropped, its lease", () => {
    const ports = Object.fromEntries(view.vmPorts.map((p) => [p.port, p]));
    expect(Object.keys(ports)).toEqual(["v-vma1", "v-x-hosta", "v-vma3", "v-vma4", "v-vma2"]);
    // vma1: its static address and the virtual address it shares (extra_addresses), not isolated.
    expect(ports["v-vma1"]).toMatchObject({ addresses: ["10.81.0.11", "10.81.0.50"], isolated: false, hasRules: true, lease: { network: "secure", ip: "10.81.0.11" } });
    // vma3: isolated (priority 220 rules), its leased address only; 8 packets of its own dropped at 200 plus an IPv6 guard drop.
    expect(ports["v-vma3"]).toMatchObject({ addresses: ["10.81.0.13"], isolated: true, allowedPackets: 22, droppedPackets: 9 });
    // The stranger (a MAC the inventory does not know) may send only as its lease.
    expect(ports["v-x-hosta"]).toMatchObject({ addresses: ["10.81.0.101"], isolated: false, lease: { ip: "10.81.0.101" } });
    expect(ports["v-vma2"]!.counters).toMatchObject({ rxPackets: 52, txPackets: 42 });
  });

  it("libvirt networks, the backend's leases as copied here, no nft table", () => {
    expect(view.networks!.map((n) => [n.name, n.active, n.bridge, n.owner, n.portgroups.map((g) => g.name)])).toEqual([
      ["datain", true, "br-datain", "lab", ["default", "isolated"]],
      ["secure", true, "br-secure", "lab", ["default", "isolated"]],
      ["service", true, "br-service", "lab", ["default", "isolated"]],
    ]);
    expect(view.leases).toHaveLength(10);
    expect(view.leases.every((l) => l.source === "from backend")).toBe(true);
    expect(view.nft).toEqual({ exists: false, sets: [], counters: [] });
  });

  it("renders in ovs-vsctl show's layout, with the VM ports' policy as a table", () => {
    const text = renderHostView(view, { revision: 4, hash: "0123456789ab".padEnd(64, "0") });
    expect(text.split("\n")[0]).toBe(`hosta: revision 4, assignment 0123456789ab, read ${view.at}`);
    expect(text).toContain(
      ["    Bridge br-uplink  (netfleet lab)", "        datapath_type: netdev", "        Port bond0", "            trunks: [1081, 1082, 1083]", "            bond_mode: active-backup", "            lacp: off"].join("\n"),
    );
    expect(text).toContain(["        Port pu-secure", "            tag: 1081", "            Interface pu-secure  (ofport 1)", "                type: patch", "                options: {peer=pb-secure}"].join("\n"));
    expect(text).toMatch(/^ {2}v-vma3 +br-secure +4 +52:54:00:81:0a:03 +10\.81\.0\.13 +yes +10\.81\.0\.13 +22 +9$/m);
    expect(text).toMatch(/^ {2}secure +active +yes +yes +br-secure +bridge\/openvswitch +default\*,isolated +lab$/m);
    expect(text).toContain("nftables: no table inet netfleet");
    expect(text).not.toContain("Not read");
  });
});

describe("show: the view of the gateway (lab backend)", () => {
  const view = buildHostView(backend.raw);

  it("the members of the allow sets and the name sets (with expiry), and the drop counters", () => {
    expect(HostView.parse(view)).toEqual(view);
    const sets = Object.fromEntries(view.nft!.sets.map((s) => [s.name, s.elements]));
    expect(sets.allow_all_tcp).toEqual([{ value: "10.81.0.11 . 198.51.100.10" }]);
    expect(sets.allow_tcp).toEqual([]);
    expect(sets.dns_9a2a437a32e5).toEqual([{ value: "198.51.100.20", expiresS: expect.any(Number) }]);
    expect(view.nft!.structure).toBe("86203578d6ef22f3");
    expect(view.nft!.counters.find((c) => c.chain === "drop_secure")).toEqual({ chain: "drop_secure", rule: "counter drop", packets: 21, bytes: 1284 });
  });

  it("dnsmasq's leases with the names the clients gave; libvirt not running is named, not fatal", () => {
    expect(view.leases.find((l) => l.ip === "10.81.0.172")).toMatchObject({ network: "secure", mac: "52:54:00:81:0b:04", hostname: "vmb4", source: "dnsmasq" });
    expect(view.networks).toBeUndefined();
    expect(view.problems).toEqual([{ source: "virsh -q -c qemu:///system net-list --all", error: expect.stringContaining("failed to connect to the hypervisor") }]);
    const text = renderHostView(view);
    expect(text).toContain("  set allow_all_tcp: 1 element\n    10.81.0.11 . 198.51.100.10\n");
    expect(text).toMatch(/^ {4}drop_secure +21 +1\.3k +counter drop$/m);
    expect(text).toMatch(/^Not read\n {2}virsh -q -c qemu:\/\/\/system net-list --all: error: failed to connect to the hypervisor/m);
  });
});

describe("show: a kernel bond with VLAN subinterfaces (ip -details -json link, OVS 3.1)", () => {
  // The resources' captures of a converged kernel-uplink host (iproute2 6.1 without -s: no counters).
  const tools = new Toolbox();
  const ok = (argv: string[], stdout: string) => ({ argv, stdout, stderr: "", exitCode: 0 });
  const raw: RawObservation = {
    host: "hv1",
    links: ok(showArgv.links(tools), fixture("ip/backend-converged-link.json")),
    addrs: ok(showArgv.addrs(tools), fixture("ip/backend-converged-addr.json")),
    ovs: ok(showArgv.ovs(tools), fixture("ovs/kernel-converged.json")),
    flows: {},
    netList: ok(showArgv.netList(tools), fixture("libvirt/net-list-all-lab.txt")),
    netXml: {},
    nftJson: { argv: showArgv.nftJson(), stdout: "", stderr: fixture("nft/table-missing.json.stderr"), exitCode: 1 },
    nftText: { argv: showArgv.nftText(), stdout: "", stderr: fixture("nft/table-missing.json.stderr"), exitCode: 1 },
    files: {},
    at: Date.parse("2026-11-30T10:00:00Z"),
  };
  const view = buildHostView(raw);

  it("the bond, its members' state, and the VLANs on it", () => {
    const text = renderHostView(view);
    expect(text).toContain("Bonds\n  bond0: active-backup, miimon 100");
    expect(text).toMatch(/^ {4}member eth0: ACTIVE, mii UP, /m);
    expect(text).toMatch(/^ {4}member eth1: BACKUP, mii UP, /m);
    expect(text).toMatch(/^ {2}bond0\.1081 +1081 +bond0 +802\.1Q +/m);
    expect(view.links.find((l) => l.name === "bond0.1083")).toMatchObject({ vlan: { id: 1083, protocol: "802.1Q" }, parent: "bond0" });
    expect(view.nft).toEqual({ exists: false, sets: [], counters: [] });
    expect(ShowReply.parse({ kind: "show-result", site: "lab", host: "hv1", revision: 0, hash: null, ok: true, view, at: view.at })).toMatchObject({ ok: true });
  });
});

describe("show: bounds and the responder", () => {
  it("a lease file longer than SHOW_LIMITS is cut, and the view says so", () => {
    // dnsmasq's lease line format, as in the backend capture (files/1-secure.leases), 5000 clients.
    const line = (i: number) => `${Math.floor(backend.at / 1000) + 3600} 52:54:00:aa:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")} 10.90.${i >> 8}.${i & 255} vm${i} *`;
    const big = Array.from({ length: 5000 }, (_, i) => line(i)).join("\n") + "\n";
    const view = buildHostView({ ...backend.raw, files: { "/var/lib/netfleet-agent/dnsmasq/big.leases": big } });
    expect(view.leases).toHaveLength(SHOW_LIMITS.leases);
    expect(view.problems).toContainEqual({ source: "leases", error: `5000 found, the first ${SHOW_LIMITS.leases} shown` });
    expect(() => HostView.parse(view)).not.toThrow();
    expect(JSON.stringify(view).length).toBeLessThan(1024 * 1024);
  });

  it("answers only a request for its own site and host; a request that does not decode is refused, the host not read", async () => {
    const who = { site: "lab", host: "hosta", log: (e: Record<string, unknown>) => void events.push(e) };
    const events: Record<string, unknown>[] = [];
    let reads = 0;
    const ctx = { current: undefined, observe: async () => (reads++, buildHostView(hosta.raw)) };
    const ask = (body: unknown) => answerShow(who, ctx, "nf.lab.show.hosta", encodeMessage(body));
    expect(await ask({ kind: "show", site: "lab", host: "hostb" })).toMatchObject({ ok: false, error: "show request names another host", host: "hosta" });
    expect(await ask({ kind: "show", site: "other", host: "hosta" })).toMatchObject({ ok: false });
    expect(await ask({ kind: "show", site: "lab", host: "hosta", extra: 1 })).toMatchObject({ ok: false });
    expect(reads).toBe(0);
    expect(events.map((e) => e.event)).toEqual(["show-rejected"]);
    const reply = await ask({ kind: "show", site: "lab", host: "hosta" });
    expect(ShowReply.parse(reply)).toMatchObject({ ok: true, revision: 0, hash: null, view: { host: "hosta" } });
    expect(reads).toBe(1);
  });
});

describe("show: what a host could put in a view or a lease folder", () => {
  it("control characters in any string an agent sends are shown escaped, never sent to the terminal", () => {
    const view = buildHostView(backend.raw);
    const crafted = HostView.parse({ ...view, problems: [{ source: "ovs", error: "x\r\u001b[2KNot read: nothing\n\u001b[32mall good\u001b[0m" }], links: [{ ...view.links[1]!, alias: "\u202eevil" }] });
    const text = renderHostView(crafted);
    expect(text).not.toMatch(/[\u001b\r\u202e]/);
    expect(text).toContain("Not read\n  ovs: x\\r\\x1b[2KNot read: nothing\\n\\x1b[32mall good\\x1b[0m\n");
  });

  it("lease files on the host: a FIFO, a link and an oversize file are named and skipped, the regular one read, nothing blocks", async () => {
    const { mkdtemp, mkdir, writeFile, symlink, truncate, rm } = await import("node:fs/promises");
    const { execFileSync } = await import("node:child_process");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { leaseFiles, MAX_LEASE_FILE_BYTES } = await import("./read.ts");
    const state = await mkdtemp(join(tmpdir(), "nf-show-"));
    onTestFinished(() => rm(state, { recursive: true, force: true }));
    const dir = join(state, "dnsmasq");
    await mkdir(dir);
    await writeFile(join(dir, "a.leases"), fixture("../../show/__fixtures__/backend/files/1-secure.leases"));
    execFileSync("mkfifo", [join(dir, "b.leases")]);
    await symlink("/etc/passwd", join(dir, "c.leases"));
    await writeFile(join(dir, "d.leases"), "");
    await truncate(join(dir, "d.leases"), MAX_LEASE_FILE_BYTES + 1);
    const tools = new Toolbox({ stateDir: state, runDir: join(state, "run") });
    const started = Date.now();
    const raw = await readHost({ host: "backend", runner: backend.runner, tools, files: leaseFiles, now: () => backend.at });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(Object.keys(raw.files)).toEqual([join(dir, "a.leases")]);
    expect(raw.unreadFiles).toEqual({
      [join(dir, "b.leases")]: "not a regular file (a FIFO), not read",
      [join(dir, "c.leases")]: "a symbolic link, not read",
      [join(dir, "d.leases")]: `${MAX_LEASE_FILE_BYTES + 1} bytes, over ${MAX_LEASE_FILE_BYTES}: not read`,
    });
    const view = buildHostView(raw);
    expect(view.leases.filter((l) => l.network === "a")).toHaveLength(8);
    expect(view.problems.map((p) => p.source)).toContain(join(dir, "b.leases"));
  });
});
