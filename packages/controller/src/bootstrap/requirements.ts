import type { Host } from "@netfleet/shared";

/**
 * What a host needs before the agent can do its job there, from its role
 * and uplink in the inventory, and the pure readers of the remote answers
 * (dpkg-query, df, modules lists), kept apart so they are unit-tested.
 */
export interface HostRequirements {
  packages: string[];
  /** Kernel modules that must be loaded, built in, or loadable. */
  modules: string[];
}

/**
 * Debian packages and kernel modules `host` needs: OVS and iproute2 everywhere; libvirt on a VM
 * host; dnsmasq and nftables on the backend; nftables also on a VXLAN VM host (its VTEP filter);
 * 8021q/bonding for a kernel uplink, vxlan for a VXLAN uplink, openvswitch for the kernel datapath.
 */
export function requirementsFor(host: Host): HostRequirements {
  const packages = ["openvswitch-switch", "iproute2"];
  if (host.role === "vmhost") packages.push("libvirt-daemon", "libvirt-clients");
  if (host.role === "backend") packages.push("dnsmasq-base", "nftables");
  // A VM host's VXLAN devices take UDP/4789 only from the site's VTEPs: an nft table of ours (vxlan-interface.ts).
  else if (host.uplink.mode === "vxlan") packages.push("nftables");
  const modules: string[] = [];
  if (host.uplink.mode === "kernel") modules.push("8021q", "bonding");
  if (host.uplink.mode === "vxlan") modules.push("vxlan"); // Linux vxlan devices, ip-link(8) type vxlan
  if (host.uplink.datapath === "system") modules.push("openvswitch");
  return { packages, modules };
}

/** `dpkg-query -W -f '${Package} ${db:Status-Status}\n' PKG...`: the ones not installed. */
export function missingPackages(wanted: readonly string[], dpkgOutput: string): string[] {
  const installed = new Set(
    dpkgOutput
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === "installed")
      .map((f) => f[0]!.replace(/:[a-z0-9]+$/, "")),
  );
  return wanted.filter((p) => !installed.has(p));
}

/** `df -Pk DIR`: available bytes on the file system holding DIR. */
export function availableBytes(dfOutput: string): number | undefined {
  const lines = dfOutput.trim().split("\n");
  const fields = lines.at(-1)?.trim().split(/\s+/);
  if (lines.length < 2 || !fields || fields.length < 6) return undefined;
  const kb = Number(fields[3]);
  return Number.isFinite(kb) ? kb * 1024 : undefined;
}

/** Whether `module` is built in or has a module file, by the kernel's modules.builtin and modules.dep. */
export function moduleAvailable(module: string, builtin: string, dep: string): boolean {
  const names = new Set([module, module.replace(/-/g, "_")]);
  const lists = [...builtin.split("\n"), ...dep.split("\n").map((l) => l.split(":")[0] ?? "")];
  return lists.some((path) => {
    const base = path.split("/").at(-1)?.replace(/\.ko(?:\.(?:xz|zst|gz))?$/, "");
    return base !== undefined && names.has(base);
  });
}

/** Major version of `node --version` output (v24.1.0), or undefined. */
export function nodeMajor(versionOutput: string): number | undefined {
  const m = /^v(\d+)\.\d+\.\d+/.exec(versionOutput.trim());
  return m ? Number(m[1]) : undefined;
}

/** `uname -m` for a Node `process.arch`. */
export function unameArch(arch: string): string | undefined {
  return ({ x64: "x86_64", arm64: "aarch64", arm: "armv7l", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" } as Record<string, string>)[arch];
}

/** /etc/os-release as key/value pairs. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
  }
  return out;
}

export function isDebianFamily(os: Record<string, string>): boolean {
  return os.ID === "debian" || (os.ID_LIKE ?? "").split(/\s+/).includes("debian");
}
