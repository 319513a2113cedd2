import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bootGuest, guestFile, missingPrerequisite, REPO, type GuestRun } from "./harness.ts";

// Tier 2: the agent against Debian's kernel (bonding, 8021q, OVS kernel
// datapath) in one qemu VM per suite. The guest script (guest/suite.sh) runs
// the product CLI on the compiled assignments of test/kernel/site and records
// everything; these tests only read what it wrote.

const SITE = "ktest";
const OWNER = `netfleet-owner=${SITE}`;
const skipReason = missingPrerequisite();
if (skipReason) console.warn(`kernel tier skipped: ${skipReason}`);

interface AgentOutput {
  host: string;
  check: boolean;
  summary: { ok: number; changed: number; failed: number; pending: number };
  results: { id: string; result: boolean | null; changed: boolean; commands: string[]; comment: string; error?: string }[];
}

interface LinkRow {
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  ifalias?: string;
  master?: string;
  link?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

interface AddrRow {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

let run: GuestRun;

function text(rel: string): string {
  const content = guestFile(run, rel);
  if (content === undefined) throw new Error(`the guest did not write ${rel}; guest log:\n${run.log.slice(-3000)}`);
  return content;
}

function rc(name: string): number {
  return Number(text(`${name}.rc`).trim());
}

function agentRun(name: string): AgentOutput & { exitCode: number; stderr: string } {
  const raw = text(`${name}.json`);
  const stderr = guestFile(run, `${name}.err`) ?? "";
  let parsed: AgentOutput;
  try {
    parsed = JSON.parse(raw) as AgentOutput;
  } catch {
    throw new Error(`${name}: agent printed no JSON (exit ${rc(name)}); stderr:\n${stderr}`);
  }
  return { ...parsed, exitCode: rc(name), stderr };
}

function links(role: string): Map<string, LinkRow> {
  return new Map((JSON.parse(text(`${role}/links.out`)) as LinkRow[]).map((l) => [l.ifname, l]));
}

function link(role: string, name: string): LinkRow {
  const l = links(role).get(name);
  if (!l) throw new Error(`${role}: no link ${name} (have ${[...links(role).keys()].join(", ")})`);
  return l;
}

/** Failed resources with their messages, for readable assertion output. */
function failures(out: AgentOutput): string[] {
  return out.results.filter((r) => r.result !== true).map((r) => `${r.id}: ${r.comment}${r.error ? ` — ${r.error}` : ""}`);
}

/** Resources of a run that would run (or ran) a command: empty when the host was left as it was. */
function busy(out: AgentOutput): string[] {
  return out.results.filter((r) => r.changed || r.commands.length > 0).map((r) => `${r.id}: ${r.commands.join(" ; ")}`);
}

describe.skipIf(skipReason !== undefined)(`kernel tier${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  beforeAll(async () => {
    run = await bootGuest({
      script: "suite.sh",
      timeoutS: 240,
      prepare: (dir) => {
        const assignments = join(dir, "in");
        mkdirSync(assignments, { recursive: true });
        execFileSync(process.execPath, [join(REPO, "packages/controller/src/cli.ts"), "compile", join(REPO, "test/kernel/site"), "--out", assignments], {
          cwd: REPO,
          stdio: ["ignore", "pipe", "pipe"],
          timeout: 60_000,
        });
      },
    });
  }, 300_000);

  it("boots Debian's kernel and the guest set-up succeeds", () => {
    const detail = `guest rc ${run.rc}, qemu exit ${run.qemuExit}${run.timedOut ? " (timed out)" : ""}, share ${run.dir}\n--- guest log tail\n${run.log.slice(-3000)}\n--- console tail\n${run.console.slice(-2000)}`;
    expect(run.timedOut, detail).toBe(false);
    expect(run.rc, detail).toBe(0);
  });

  it("the guest stopped every daemon it started (dnsmasq, libvirtd, ovsdb-server, ovs-vswitchd, tcpdump)", () => {
    const ps = text("logs/ps.out").trim().split("\n");
    expect(ps[0]).toMatch(/^\s*PID COMMAND\s+COMMAND$/);
    expect(ps.length).toBeGreaterThan(3);
    const left = ps.slice(1).filter((l) => ["dnsmasq", "libvirtd", "ovsdb-server", "ovs-vswitchd", "tcpdump"].includes(l.trim().split(/\s+/)[1] ?? ""));
    expect(left).toEqual([]);
  });

  describe("VM host kvm1", () => {
    it("first apply converges every resource", () => {
      const first = agentRun("vmhost/apply1");
      expect(failures(first), first.stderr).toEqual([]);
      expect(first.exitCode).toBe(0);
      expect(first.results.map((r) => r.id)).toEqual([
        "kernel-bond[bond0]",
        "vlan-interface[bond0.1081]",
        "vlan-interface[bond0.1082]",
        "ovs-bridge[br-secure]",
        "ovs-bridge[br-service]",
        "vm-port-policy[br-secure]",
        "vm-port-policy[br-service]",
        "libvirt-network[secure]",
        "libvirt-network[service]",
        "owned-cleanup[host]",
      ]);
      expect(first.results.filter((r) => r.changed).map((r) => r.id)).toEqual(
        expect.arrayContaining([
          "kernel-bond[bond0]",
          "vlan-interface[bond0.1081]",
          "vlan-interface[bond0.1082]",
          "ovs-bridge[br-secure]",
          "ovs-bridge[br-service]",
          "libvirt-network[secure]",
          "libvirt-network[service]",
        ]),
      );
    });

    it("second apply changes nothing and runs no command", () => {
      const second = agentRun("vmhost/apply2");
      expect(failures(second), second.stderr).toEqual([]);
      expect(second.exitCode).toBe(0);
      expect(second.summary).toEqual({ ok: 10, changed: 0, failed: 0, pending: 0 });
      expect(busy(second)).toEqual([]);
    });

    it.each(["secure", "service"])("libvirt network %s is defined from a file in the agent's run dir, not from /dev/stdin", (net) => {
      const r = agentRun("vmhost/apply1").results.find((x) => x.id === `libvirt-network[${net}]`)!;
      const path = `/run/netfleet/libvirt/${net}.xml`;
      expect(r.commands.map((c) => c.split("\n")[0])).toEqual([
        expect.stringMatching(new RegExp(`^# write ${path} \\(\\d+ bytes\\)$`)),
        `virsh -q -c qemu:///system net-define ${path}`,
        `virsh -q -c qemu:///system net-autostart ${net}`,
        `virsh -q -c qemu:///system net-start ${net}`,
      ]);
      expect(r.commands.join("\n")).not.toContain("/dev/stdin");
      // the file holds exactly the XML the plan showed, and libvirt kept our owner mark from it
      expect(text(`vmhost/defined-${net}.out`)).toBe(r.commands[0]!.split("\n").slice(1).join("\n") + "\n");
      expect(text(`vmhost/virsh-net-dumpxml-${net}.out`)).toMatch(/<nf:owner xmlns:nf="[^"]+">ktest<\/nf:owner>/);
    });

    it("bond0 is an active-backup bond of eth0 and eth1, MTU 9000, marked as ours", () => {
      const bond = link("vmhost", "bond0");
      expect(bond.linkinfo?.info_kind).toBe("bond");
      expect(bond.linkinfo?.info_data?.mode).toBe("active-backup");
      expect(bond.linkinfo?.info_data?.miimon).toBe(100);
      expect(bond.mtu).toBe(9000);
      expect(bond.ifalias).toBe(OWNER);
      expect(bond.flags).toContain("UP");
      const members = [...links("vmhost").values()].filter((l) => l.master === "bond0").map((l) => l.ifname).sort();
      expect(members).toEqual(["eth0", "eth1"]);
      expect(text("vmhost/bonding.out")).toMatch(/Bonding Mode: fault-tolerance \(active-backup\)[\s\S]*Currently Active Slave: eth0/);
    });

    it.each([1081, 1082])("bond0.%i is an 802.1Q subinterface of bond0, MTU 9000, marked as ours", (vid) => {
      const vlan = link("vmhost", `bond0.${vid}`);
      expect(vlan.linkinfo?.info_kind).toBe("vlan");
      expect(vlan.linkinfo?.info_data).toMatchObject({ protocol: "802.1Q", id: vid });
      expect(vlan.link).toBe("bond0");
      expect(vlan.mtu).toBe(9000);
      expect(vlan.ifalias).toBe(OWNER);
      expect(vlan.flags).toContain("UP");
    });

    it("br-secure holds bond0.1081 and br-service holds bond0.1082, bridges and ports marked as ours", () => {
      expect(text("vmhost/ovs-br-secure-ports.out").split("\n").filter(Boolean)).toEqual(["bond0.1081"]);
      expect(text("vmhost/ovs-br-service-ports.out").split("\n").filter(Boolean)).toEqual(["bond0.1082"]);
      const tables = text("vmhost/ovs-ports.out").trim().split("\n").map((l) => JSON.parse(l) as { headings: string[]; data: unknown[][] });
      const owners = tables.flatMap((t) => t.data.map((row) => [String(row[0]), JSON.stringify(row[1])]));
      for (const name of ["br-secure", "br-service", "bond0.1081", "bond0.1082"]) {
        const row = owners.find(([n]) => n === name);
        expect(row?.[1], name).toContain(`["netfleet-owner","${SITE}"]`);
      }
    });

    it("the bridges run on the kernel datapath (system@ovs-system)", () => {
      const dp = text("vmhost/ovs-dpctl-show.out");
      expect(dp).toMatch(/^system@ovs-system:/);
      expect(dp).toMatch(/port \d+: bond0\.1081\b/);
      expect(dp).toMatch(/port \d+: bond0\.1082\b/);
      expect(dp).toMatch(/port \d+: br-secure \(internal\)/);
      expect(text("vmhost/ovs-vsctl-show.out")).not.toMatch(/datapath_type: netdev/);
    });

    it("libvirt networks secure and service are defined on the OVS bridges, active and autostarted", () => {
      expect(text("vmhost/virsh-net-list.out")).toMatch(/^\s*secure\s+active\s+yes\s+yes\s*$/m);
      expect(text("vmhost/virsh-net-list.out")).toMatch(/^\s*service\s+active\s+yes\s+yes\s*$/m);
      const xml = text("vmhost/virsh-net-dumpxml-secure.out");
      expect(xml).toContain("<bridge name='br-secure'/>");
      expect(xml).toContain("<virtualport type='openvswitch'/>");
      expect(xml).toMatch(/<nf:owner xmlns:nf="[^"]+">ktest<\/nf:owner>/);
    });
  });

  describe("traffic through kvm1's bond (switch netns sw on the far ends of eth0/eth1)", () => {
    it("frames from br-secure leave the bond tagged with VLAN 1081", () => {
      const frames = ["peer0", "peer1"].flatMap((p) =>
        (guestFile(run, `traffic/tcpdump-1081-${p}.txt`) ?? "").split("\n").filter((l) => /vlan 1081\b/.test(l)),
      );
      expect(frames.length, text("traffic/tcpdump-1081-peer0.err")).toBeGreaterThanOrEqual(1);
      expect(frames.join("\n")).toMatch(/ethertype 802\.1Q \(0x8100\)/);
      // captured as received by the switch port: sent by kvm1's bond, from probe1 (10.81.0.10)
      expect(frames.join("\n")).toMatch(/10\.81\.0\.10\b/);
    });

    it("a port on br-secure reaches the switch on VLAN 1081, and br-service reaches it on VLAN 1082", () => {
      expect(rc("traffic/ping-1081"), text("traffic/ping-1081.out") + text("traffic/ping-1081.err")).toBe(0);
      expect(rc("traffic/ping-1082"), text("traffic/ping-1082.out") + text("traffic/ping-1082.err")).toBe(0);
    });

    it("a port on br-secure cannot reach the switch's address on VLAN 1082", () => {
      expect(rc("traffic/ping-cross")).not.toBe(0);
      expect(text("traffic/ping-cross.out")).toMatch(/3 packets transmitted, 0 received/);
    });
  });

  describe("backend kbe (own netns and mount namespace: no ovsdb-server, no libvirtd)", () => {
    it("neither an ovsdb-server nor a libvirtd is reachable on kbe", () => {
      expect(rc("backend/no-ovsdb")).toBe(1);
      expect(text("backend/no-ovsdb.err")).toMatch(/database connection failed \(No such file or directory\)/);
      expect(rc("backend/no-libvirtd")).toBe(1);
      expect(text("backend/no-libvirtd.err")).toMatch(/Failed to connect socket to '[^']+': No such file or directory/);
    });

    it("first apply converges every resource; owned-cleanup finds nothing of ours where no OVS or libvirt runs", () => {
      const first = agentRun("backend/apply1");
      expect(failures(first), first.stderr).toEqual([]);
      expect(first.exitCode).toBe(0);
      expect(first.results.filter((r) => r.changed).map((r) => r.id)).toEqual([
        "kernel-bond[bond0]",
        "vlan-interface[bond0.1081]",
        "vlan-interface[bond0.1082]",
        "interface-address[bond0.1081]",
        "interface-address[bond0.1082]",
        "sysctl[net.ipv4.ip_forward]",
        "nft-table[netfleet]",
        "dnsmasq[secure]",
        "dnsmasq[service]",
      ]);
      const cleanup = first.results.find((r) => r.id === "owned-cleanup[host]");
      expect(cleanup).toMatchObject({ result: true, changed: false, commands: [] });
      expect(cleanup?.comment).toMatch(/no libvirtd, no ovsdb-server running on this host/);
    });

    it("second apply changes nothing and runs no command", () => {
      const second = agentRun("backend/apply2");
      expect(failures(second), second.stderr).toEqual([]);
      expect(second.exitCode).toBe(0);
      expect(second.summary).toEqual({ ok: 10, changed: 0, failed: 0, pending: 0 });
      expect(busy(second)).toEqual([]);
    });

    it("bond0.1081 and bond0.1082 carry the gateway addresses and gateway MACs of the site", () => {
      const addrs = new Map((JSON.parse(text("backend/addrs.out")) as AddrRow[]).map((r) => [r.ifname, r.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`)]));
      expect(addrs.get("bond0.1081")).toEqual(["192.168.128.1/17"]);
      expect(addrs.get("bond0.1082")).toEqual(["192.168.122.1/24"]);
      expect(addrs.get("eth2")).toEqual(["203.0.113.2/24"]);
      expect(link("backend", "bond0.1081").address).toBe("02:4e:46:00:04:39");
      expect(link("backend", "bond0.1082").address).toBe("02:4e:46:00:04:3a");
      for (const name of ["bond0", "bond0.1081", "bond0.1082"]) expect(link("backend", name).ifalias, name).toBe(OWNER);
      for (const vid of [1081, 1082]) {
        expect(link("backend", `bond0.${vid}`).linkinfo?.info_data).toMatchObject({ protocol: "802.1Q", id: vid });
        expect(link("backend", `bond0.${vid}`).link).toBe("bond0");
      }
      expect(link("backend", "bond0").linkinfo?.info_data?.mode).toBe("active-backup");
      const members = [...links("backend").values()].filter((l) => l.master === "bond0").map((l) => l.ifname).sort();
      expect(members).toEqual(["eth0", "eth1"]);
      expect(link("backend", "eth2").master).toBeUndefined();
    });

    it("forwarding is on (it was off before)", () => {
      expect(text("backend/sysctl-before.out").trim()).toBe("0");
      expect(text("backend/ip_forward.out").trim()).toBe("1");
    });

    it("the nftables table inet netfleet filters and masquerades the site's networks to eth2", () => {
      const table = text("backend/nft-table.out");
      expect(rc("backend/nft-table"), text("backend/nft-table.err")).toBe(0);
      expect(table).toMatch(/^table inet netfleet \{/m);
      expect(table).toMatch(/chain forward \{\s*type filter hook forward priority filter; policy drop;/);
      expect(table).toMatch(/iifname \{ "bond0\.1081", "bond0\.1082" \} jump from_vms/);
      expect(table).toContain('iifname "bond0.1082" oifname "eth2" accept');
      expect(table).toContain('iifname "bond0.1081" oifname "eth2" ip saddr . ip daddr . tcp dport @allow_tcp accept');
      expect(table).not.toContain('iifname "bond0.1081" oifname "eth2" accept');
      const nat = /oifname "eth2" ip saddr \{ ([^}]*) \} masquerade/.exec(table);
      expect(nat?.[1]?.split(", ").sort()).toEqual(["192.168.122.0/24", "192.168.128.0/17"]);
    });

    it("dnsmasq serves each network on its gateway address and answers DNS for the site", () => {
      const ps = text("backend/dnsmasq-ps.out");
      for (const net of ["secure", "service"]) expect(ps).toContain(`dnsmasq --conf-file=/run/netfleet/dnsmasq/${net}.conf`);
      expect(rc("traffic/dns-service"), text("traffic/dns-service.err")).toBe(0);
      expect(text("traffic/dns-service.out").trim()).toBe("192.168.122.1");
    });
  });

  describe("traffic through kbe (probes on kvm1's bridges, kbe reached over the switch)", () => {
    it("a port on kvm1's br-secure reaches the backend's gateway address on VLAN 1081, at the gateway MAC", () => {
      expect(rc("traffic/ping-gw-secure"), text("traffic/ping-gw-secure.out")).toBe(0);
      expect(rc("traffic/ping-gw-service"), text("traffic/ping-gw-service.out")).toBe(0);
      const neigh = JSON.parse(text("traffic/neigh-p1.out")) as { dst: string; lladdr?: string }[];
      expect(neigh.find((n) => n.dst === "192.168.128.1")?.lladdr).toBe("02:4e:46:00:04:39");
    });

    it("service (egress open) reaches the internet behind eth2, masqueraded (the far side has no route back)", () => {
      expect(rc("traffic/sw-route-back")).not.toBe(0);
      expect(rc("traffic/ping-internet-service"), text("traffic/ping-internet-service.out") + text("traffic/ping-internet-service.err")).toBe(0);
    });

    it("secure (allow-list, nothing allowed) does not: the forward chain drops and counts it", () => {
      expect(rc("traffic/ping-internet-secure")).not.toBe(0);
      expect(text("traffic/ping-internet-secure.out")).toMatch(/2 packets transmitted, 0 received/);
      const dropped = /counter packets (\d+) bytes \d+ drop/.exec(text("traffic/nft-forward.out"));
      expect(Number(dropped?.[1]), text("traffic/nft-forward.out")).toBeGreaterThanOrEqual(2);
    });
  });
});
