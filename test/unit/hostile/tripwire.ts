/**
 * A PATH tripwire: a folder of executables named like every system tool
 * netfleet drives (ip, ovs-vsctl, nft, virsh, dnsmasq, ...), put first in
 * PATH of a process under test. Each one, if ever run, appends its argv to
 * a log and fails; an empty log means no command was run.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The tools of the agent (tools.ts, the resources), the lab and bootstrap. */
export const TRIPWIRE_TOOLS = [
  "ip", "bridge", "tc", "sysctl", "ethtool", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovsdb-client", "ovsdb-tool",
  "nft", "iptables", "virsh", "dnsmasq", "nats-server", "ssh", "scp", "systemctl", "modprobe", "dhclient", "ping",
] as const;

/** The tripwire folder (`bin`, first in PATH) and its default log. */
export class Tripwire {
  readonly bin: string;
  readonly log: string;

  /** Creates the tripwire under `root` (a folder of the caller's scratch area). */
  constructor(root: string) {
    this.bin = join(root, "tripwire-bin");
    this.log = join(root, "tripwire.log");
    mkdirSync(this.bin);
    for (const tool of TRIPWIRE_TOOLS) {
      const path = join(this.bin, tool);
      // The log is NETFLEET_TRIPWIRE_LOG of the caller (one per process under test), else ours
      // (a mkdtemp folder: no quote can be in its path).
      writeFileSync(path, `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> "\${NETFLEET_TRIPWIRE_LOG:-${this.log}}"\nexit 97\n`);
      chmodSync(path, 0o755);
    }
  }

  /** PATH with the tripwire first. */
  path(): string {
    return `${this.bin}:${process.env.PATH ?? "/usr/bin:/bin"}`;
  }

  /** What was run through the tripwire so far into `log` (empty: nothing). */
  invoked(log = this.log): string {
    return existsSync(log) ? readFileSync(log, "utf8") : "";
  }
}
