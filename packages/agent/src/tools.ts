import { join } from "node:path";

/**
 * Where this host's tools live. In production the defaults apply; the lab
 * runs one OVS and one libvirtd per host namespace and points the agent at
 * them, so every argv is built here and nowhere else.
 */
export interface ToolPaths {
  /** ovsdb socket, e.g. `/run/openvswitch/db.sock`. */
  ovsDb?: string;
  /** OVS run dir holding `<bridge>.mgmt` sockets for ovs-ofctl. */
  ovsRundir?: string;
  /** libvirt connection URI. */
  libvirtUri?: string;
  /** Where the agent keeps the files of services it supervises (dnsmasq). */
  runDir?: string;
  /**
   * Where the agent keeps what must survive a reboot (dnsmasq's lease files;
   * the fleet agent's key and checkpoint live there too).
   */
  stateDir?: string;
}

/** The paths and URIs the agent's tools are run with (ovsdb socket, libvirt URI, run and state dirs). */
export class Toolbox {
  readonly paths: ToolPaths;
  constructor(paths: ToolPaths = {}) {
    this.paths = paths;
  }

  get runDir(): string {
    return this.paths.runDir ?? "/run/netfleet";
  }

  /**
   * The persistent state dir: `paths.stateDir`; else `<runDir>/state` when
   * only a run dir was given (the lab's layout: one dir per host, its state
   * under it); else `/var/lib/netfleet-agent` (the fleet agent's default
   * --state-dir). `/run` is a tmpfs: nothing there survives a reboot.
   */
  get stateDir(): string {
    return this.paths.stateDir ?? (this.paths.runDir !== undefined ? join(this.paths.runDir, "state") : "/var/lib/netfleet-agent");
  }

  ip(...args: string[]): string[] {
    return ["ip", ...args];
  }

  ovsVsctl(...args: string[]): string[] {
    const db = this.paths.ovsDb ? [`--db=unix:${this.paths.ovsDb}`] : [];
    return ["ovs-vsctl", ...db, "--timeout=30", ...args];
  }

  /** ovs-ofctl addresses a bridge through its management socket when OVS runs with a private run dir. */
  ovsOfctl(command: string, bridge: string, ...args: string[]): string[] {
    return ["ovs-ofctl", "-O", "OpenFlow13", command, this.ofTarget(bridge), ...args];
  }

  /** `ovs-ofctl --bundle add-flows BRIDGE -`: the whole file is one atomic transaction. */
  ovsOfctlBundle(bridge: string): string[] {
    return ["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", this.ofTarget(bridge), "-"];
  }

  private ofTarget(bridge: string): string {
    return this.paths.ovsRundir ? `unix:${this.paths.ovsRundir}/${bridge}.mgmt` : bridge;
  }

  virsh(...args: string[]): string[] {
    return ["virsh", "-q", "-c", this.paths.libvirtUri ?? "qemu:///system", ...args];
  }

  /** iputils ping (the management move's lockout check). */
  ping(...args: string[]): string[] {
    return ["ping", ...args];
  }

  sysctl(...args: string[]): string[] {
    return ["sysctl", ...args];
  }
}
