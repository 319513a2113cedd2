import { execFile } from "node:child_process";
import { access, readFile } from "node:fs/promises";
import { release } from "node:os";
import { INTERFACE_NAME, MAC_ADDRESS, type EnrollFacts, type InterfaceFact, type KernelFeature } from "@netfleet/shared";

/** The host facts an enrollment carries: interfaces, kernel modules, OVS and libvirt versions. */
export type HostFacts = Pick<EnrollFacts, "interfaces" | "kernel" | "ovsVersion" | "libvirtVersion">;

/** Runs a read-only tool; undefined when it is missing or fails (facts tolerate missing tools). */
export type ReadTool = (argv: string[]) => Promise<string | undefined>;

/** Runs a read-only tool; its stdout, or undefined when it is missing or fails. */
export const readTool: ReadTool = (argv) =>
  new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 5000, maxBuffer: 8 << 20 }, (err, stdout) => resolve(err ? undefined : stdout));
  });

/** What the host has: links and MACs, kernel modules for VLANs, bonds and the OVS datapath, OVS and libvirt versions. */
export async function gatherHostFacts(read: ReadTool = readTool, sysRoot = "/"): Promise<HostFacts> {
  const [links, ovs, virsh] = await Promise.all([read(["ip", "-json", "-details", "link", "show"]), read(["ovs-vsctl", "--version"]), read(["virsh", "--version"])]);
  return {
    interfaces: parseLinks(links),
    kernel: {
      "8021q": await kernelFeature("8021q", sysRoot),
      bonding: await kernelFeature("bonding", sysRoot),
      openvswitch: await kernelFeature("openvswitch", sysRoot),
    },
    ovsVersion: ovs?.match(/\(Open vSwitch\)\s+(\S+)/)?.[1] ?? null,
    libvirtVersion: virsh?.trim().split("\n")[0]?.match(/^\d+(?:\.\d+)*$/)?.[0] ?? null,
  };
}

/** The interfaces of `ip -json link` output (undefined or unparsable: none). */
export function parseLinks(json: string | undefined): InterfaceFact[] {
  if (!json) return [];
  let links: unknown;
  try {
    links = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(links)) return [];
  return links.flatMap((l: { ifname?: unknown; address?: unknown; operstate?: unknown; link_type?: unknown; linkinfo?: { info_kind?: unknown } }) => {
    if (typeof l.ifname !== "string" || !INTERFACE_NAME.test(l.ifname)) return [];
    const mac = l.link_type === "ether" && typeof l.address === "string" && MAC_ADDRESS.test(l.address) ? l.address.toLowerCase() : null;
    const str = (v: unknown) => (typeof v === "string" ? v.slice(0, 32) : null);
    return [{ name: l.ifname, mac, state: str(l.operstate), kind: str(l.linkinfo?.info_kind) }];
  });
}

/** Loaded: /sys/module/<name> exists. Available: loaded, built in, or a module file the kernel can load. */
async function kernelFeature(module: string, sysRoot: string): Promise<KernelFeature> {
  const loaded = await access(`${sysRoot}sys/module/${module}`).then(() => true, () => false);
  if (loaded) return { loaded, available: true };
  const dir = `${sysRoot}lib/modules/${release()}`;
  const lists = await Promise.all([readFile(`${dir}/modules.builtin`, "utf8").catch(() => ""), readFile(`${dir}/modules.dep`, "utf8").catch(() => "")]);
  const pattern = new RegExp(`(^|/)${module}\\.ko(\\.[a-z]+)?(:|$)`, "m");
  return { loaded, available: lists.some((l) => pattern.test(l)) };
}
