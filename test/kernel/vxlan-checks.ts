import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sealAssignment, type HostAssignment, type ResourceSpec } from "@netfleet/shared";
import type { GuestReader } from "./management-checks.ts";

/**
 * Kernel-tier rows for the VXLAN overlay (issue 17; registered by
 * kernel.test.ts, which boots the guest once; the guest side is
 * guest/vxlan.sh): the site test/kernel/site-vxlan compiled as the
 * controller compiles it, applied by the agent on Debian's kernel, the VM
 * bridge on OVS's kernel datapath with the Linux vxlan device as its uplink
 * port, the backend's gateway address on its own vxlan device across an
 * underlay veth.
 */

const VNI = 9097;
const XA = "52:54:00:97:00:01";
const GW_MAC = "02:4e:46:00:04:49"; // gatewayMac(1097)

/**
 * Compiles test/kernel/site-vxlan into `<dir>/kvx1.json` (whole) and
 * `<dir>/kvxb.json` (the backend reduced to its vxlan device and gateway
 * address, sealed again: the ktest backend owns dnsmasq and nftables in this
 * guest, and a second one would be another test).
 */
export function writeVxlanAssignments(repo: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(process.execPath, [join(repo, "packages/controller/src/cli.ts"), "compile", join(repo, "test/kernel/site-vxlan"), "--out", dir], { cwd: repo, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  const backend = JSON.parse(readFileSync(join(dir, "kvxb.json"), "utf8")) as HostAssignment;
  const { hash: _, ...body } = backend;
  const resources: ResourceSpec[] = body.resources.filter((r) => r.kind === "vxlan-interface" || r.kind === "interface-address");
  writeFileSync(join(dir, "kvxb.json"), JSON.stringify(sealAssignment({ ...body, resources }), null, 2) + "\n");
}

interface Result {
  id: string;
  result: boolean | null;
  changed: boolean;
  commands: string[];
  comment: string;
}

interface Link {
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

export function vxlanTests(g: GuestReader): void {
  const results = (name: string): Result[] => {
    const raw = g.text(`vxlan/${name}.json`);
    try {
      return (JSON.parse(raw) as { results: Result[] }).results;
    } catch {
      throw new Error(`vxlan/${name}: no JSON (exit ${g.rc(`vxlan/${name}`)}): ${g.text(`vxlan/${name}.err`)}`);
    }
  };
  const failed = (name: string) => results(name).filter((r) => r.result !== true).map((r) => `${r.id}: ${r.comment}`);
  const link = (side: "vmhost" | "backend", name: string): Link => {
    const l = (JSON.parse(g.text(`vxlan/${side}-links.out`)) as Link[]).find((x) => x.ifname === name);
    if (!l) throw new Error(`${side}: no link ${name}`);
    return l;
  };
  const flood = (side: "vmhost" | "backend") =>
    (JSON.parse(g.text(`vxlan/${side}-fdb.out`)) as { mac: string; dst?: string; state?: string }[]).filter((e) => e.mac === "00:00:00:00:00:00" && e.state === "permanent").map((e) => e.dst);
  /** Capture lines (tcpdump -tt -e -nn) of a recorded capture. */
  const lines = (name: string) => g.text(`vxlan/${name}.txt`).split("\n").filter(Boolean);
  /** VXLAN packets of a capture: tcpdump prints the outer header (UDP 4789, the VNI) and on the next line the inner frame. */
  const packets = (name: string) => {
    const all = lines(name);
    return all.flatMap((l, i) => (/: VXLAN, /.test(l) && all[i + 1] !== undefined ? [{ outer: l, inner: all[i + 1]! }] : []));
  };
  const transmitted = (name: string) => Number(/(\d+) packets transmitted/.exec(g.text(`vxlan/${name}.out`))?.[1] ?? NaN);

  describe("VXLAN overlay on the kernel datapath (site-vxlan: kvx1 with br-vxnet on OVS system, kvxb's gateway on vx-vxnet, VNI 9097 over vxu0-vxu1)", () => {
    it("the agent converges both hosts from the compiled assignments, and a further apply changes nothing", () => {
      for (const name of ["backend-apply1", "vmhost-apply1", "vmhost-apply2", "backend-apply2", "vmhost-apply3"]) {
        expect(failed(name), name).toEqual([]);
        expect(g.rc(`vxlan/${name}`), name).toBe(0);
      }
      expect(results("vmhost-apply1").map((r) => r.id)).toEqual(["vxlan-interface[vx-vxnet]", "ovs-bridge[br-vxnet]", "vm-port-policy[br-vxnet]", "libvirt-network[vxnet]", "prune[host]"]);
      expect(results("vmhost-apply1").find((r) => r.id === "vxlan-interface[vx-vxnet]")?.changed).toBe(true);
      // plugging the VMs changes only their port policy (lifecycle); then nothing is left to do on either host
      expect(results("vmhost-apply2").filter((r) => r.changed).map((r) => r.id)).toEqual(["vm-port-policy[br-vxnet]"]);
      for (const name of ["vmhost-apply3", "backend-apply2"]) expect(results(name).filter((r) => r.changed || r.commands.length > 0).map((r) => r.id), name).toEqual([]);
    });

    it("vx-vxnet on each host is a vxlan device of VNI 9097, port 4789, bound to the underlay, MTU 1450, marked as ours, flooding to the other host", () => {
      for (const [side, local, underlay, peer] of [["vmhost", "10.97.0.11", "vxu0", "10.97.0.2"], ["backend", "10.97.0.2", "vxu1", "10.97.0.11"]] as const) {
        const l = link(side, "vx-vxnet");
        expect(l.linkinfo?.info_kind, side).toBe("vxlan");
        expect(l.linkinfo?.info_data, side).toMatchObject({ id: VNI, local, link: underlay, port: 4789 });
        expect([l.mtu, l.ifalias, l.flags.includes("UP")], side).toEqual([1450, "netfleet-owner=kvx", true]);
        expect(flood(side), side).toEqual([peer]);
      }
      expect(link("backend", "vx-vxnet").address).toBe(GW_MAC);
      expect(g.text("vxlan/backend-addr.out")).toContain('"local":"10.197.0.1","prefixlen":24');
    });

    it("br-vxnet is on the kernel datapath with vx-vxnet as its uplink port beside the VM ports", () => {
      expect(g.text("vxlan/datapath.out").trim()).toBe("system"); // the kernel datapath
      expect(g.text("vxlan/ports.out").split("\n").filter(Boolean)).toEqual(["vnet-xa", "vnet-xb", "vx-vxnet"]);
      expect(g.text("vxlan/dpif.out")).toMatch(/system@ovs-system:[\s\S]*br-vxnet:[\s\S]*vx-vxnet \d+\/\d+:/);
      // the kernel datapath forwarded xa's traffic out of the vxlan port (a datapath flow matching xa's MAC)
      expect(g.text("vxlan/dp-flows.out")).toMatch(new RegExp(`eth\\(src=${XA}[^)]*\\)`));
    });

    it("xa reaches the gateway across the overlay; on the underlay its frames are VXLAN with VNI 9097, inner MACs intact", () => {
      expect(g.rc("vxlan/ping-gw"), g.text("vxlan/ping-gw.out")).toBe(0);
      const wire = packets("wire").filter((p) => / ICMP echo request\b/.test(p.inner) && p.inner.includes("10.197.0.11 > 10.197.0.1"));
      expect(wire.length, lines("wire").slice(0, 6).join("\n")).toBeGreaterThan(0);
      for (const p of wire) {
        expect(p.outer).toMatch(/10\.97\.0\.11\.\d+ > 10\.97\.0\.2\.4789: VXLAN, flags \[I\] \(0x08\), vni 9097\b/);
        expect(p.inner).toContain(`${XA} > ${GW_MAC}`);
      }
    });

    it("MTU accounted: a 1450-byte packet with DF crosses (1500 on the underlay, its MTU); one byte more does not", () => {
      expect(g.rc("vxlan/ping-1450"), g.text("vxlan/ping-1450.out")).toBe(0);
      // the 1422-byte echo (ICMP length 1430) crossed the underlay inside VXLAN
      expect(packets("wire").some((p) => / ICMP echo request, .*length 1430\b/.test(p.inner) && p.outer.includes("vni 9097"))).toBe(true);
      expect(g.rc("vxlan/ping-1451")).not.toBe(0);
      expect(lines("gw").filter((l) => / ICMP echo request\b/.test(l) && /length 1431\b/.test(l))).toEqual([]);
    });

    it("anti-spoofing holds over the overlay: xa's echo requests from a foreign address never reach the gateway, its own-address ones beside them do", () => {
      expect(transmitted("ping-spoof")).toBe(3);
      expect(transmitted("ping-own")).toBe(3);
      const at = (src: string) => lines("gw").filter((l) => / ICMP echo request\b/.test(l) && l.includes(`${src} > 10.197.0.1`));
      expect(at("10.197.0.11").length).toBeGreaterThanOrEqual(3);
      expect(at("10.197.0.98")).toEqual([]);
      expect(lines("wire").filter((l) => l.includes("10.197.0.98 >"))).toEqual([]);
    });
  });
}
