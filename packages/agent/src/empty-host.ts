import type { Command, Runner, RunResult } from "./exec/runner.ts";
import type { HostAccess } from "./resources/types.ts";

/** The files and processes of a freshly installed host: none of ours (pass as `reconcile`'s `host`). */
export const emptyHost: HostAccess = {
  readFile: async () => undefined,
  listDir: async () => undefined,
  processArgv: async () => undefined,
};

/**
 * Answers the agent's read-only commands as a freshly installed host would:
 * only loopback and the physical NICs named, an empty OVS database, no
 * libvirt networks, forwarding off. `netfleet plan` runs a check-mode
 * reconcile against it to show the exact commands of a first apply.
 */
export class EmptyHostRunner implements Runner {
  private readonly nics: string[];
  constructor(nics: readonly string[]) {
    this.nics = [...nics];
  }

  async run(command: Command): Promise<RunResult> {
    if (command.mutating) throw new Error("EmptyHostRunner runs no mutating command");
    const argv = command.argv;
    const ok = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0, durationMs: 0 });
    if (argv[0] === "ip" && argv.includes("link")) {
      const links = [{ ifname: "lo", mtu: 65536, flags: ["LOOPBACK", "UP", "LOWER_UP"] }];
      this.nics.forEach((name, i) => {
        links.push({ ifname: name, mtu: 1500, flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], address: `52:54:00:00:00:${(i + 1).toString(16).padStart(2, "0")}` } as (typeof links)[0]);
      });
      return ok(JSON.stringify(links));
    }
    if (argv[0] === "ip" && argv.includes("addr")) return ok(JSON.stringify([]));
    // A fresh host answers with no routes; the management guard reads them before any command of a pass.
    if (argv[0] === "ip" && argv.includes("route")) return ok(JSON.stringify([]));
    if (argv[0] === "ovs-vsctl") {
      const table = (headings: string) => JSON.stringify({ data: [], headings: headings.split(",") });
      return ok(
        [
          table("_uuid,name,datapath_type,fail_mode,ports,external_ids"),
          table("_uuid,name,interfaces,tag,trunks,bond_mode,vlan_mode,external_ids"),
          table("_uuid,name,type,options,external_ids,ofport,mac_in_use,mtu_request,mtu"),
        ].join("\n") + "\n",
      );
    }
    if (argv[0] === "virsh" && argv.includes("net-list")) return ok("\n");
    if (argv[0] === "sysctl") return ok("0\n");
    if (argv[0] === "nft") return { stdout: "", stderr: "Error: No such file or directory\n", exitCode: 1, durationMs: 0 };
    throw new Error(`EmptyHostRunner: no empty-host answer for ${argv.join(" ")}`);
  }
}
