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

  /**
   * The sockets virsh may reach libvirt through for this host's URI: the
   * URI's `?socket=` path, else for `qemu:///system` the default daemons'
   * (virtqemud's in the modular layout, libvirtd's in the monolithic one,
   * under /var/run/libvirt: libvirt's "Connection URIs" page, "Local URIs").
   * Undefined for any other URI (remote, test driver): then only virsh knows.
   */
  libvirtSockets(): string[] | undefined {
    const uri = this.paths.libvirtUri ?? "qemu:///system";
    const m = /^qemu:\/\/\/system(?:\?socket=([^&]+))?$/.exec(uri);
    if (!m) return undefined;
    return m[1] !== undefined ? [m[1]] : ["/var/run/libvirt/virtqemud-sock", "/var/run/libvirt/libvirt-sock"];
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
