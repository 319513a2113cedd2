import { describe, expect, it } from "vitest";
import type { Host } from "@netfleet/shared";
import { availableBytes, isDebianFamily, missingPackages, moduleAvailable, nodeMajor, parseOsRelease, requirementsFor } from "./requirements.ts";

const host = (over: Partial<Host>): Host => ({
  name: "hv1",
  role: "vmhost",
  groups: [],
  labels: {},
  networks: [],
  uplink: { mode: "kernel", bond: "bond0", members: ["eno1", "eno2"], bond_mode: "802.3ad", miimon: 100, mtu: 9000, datapath: "system", trunk_bridge: "br-uplink", carries_management: false },
  ...over,
});

describe("host requirements", () => {
  it("follow the role and the uplink", () => {
    expect(requirementsFor(host({}))).toEqual({ packages: ["openvswitch-switch", "iproute2", "libvirt-daemon", "libvirt-clients"], modules: ["8021q", "bonding", "openvswitch"] });
    const backend = host({ role: "backend", uplink: { mode: "ovs-trunk", bond: "bond0", members: ["eth0"], bond_mode: "active-backup", miimon: 100, mtu: 1500, datapath: "netdev", trunk_bridge: "br-uplink", carries_management: false } });
    expect(requirementsFor(backend)).toEqual({ packages: ["openvswitch-switch", "iproute2", "dnsmasq-base", "nftables"], modules: [] });
    const vxlanVmHost = host({ uplink: { ...host({}).uplink, mode: "vxlan", datapath: "netdev" } as never });
    expect(requirementsFor(vxlanVmHost)).toEqual({ packages: ["openvswitch-switch", "iproute2", "libvirt-daemon", "libvirt-clients", "nftables"], modules: ["vxlan"] });
  });

  it("read dpkg-query, df, the modules lists, node --version and os-release", () => {
    const dpkg = "openvswitch-switch installed\niproute2 installed\nlibvirt-daemon:amd64 installed\nlibvirt-clients config-files\n";
    expect(missingPackages(["openvswitch-switch", "iproute2", "libvirt-daemon", "libvirt-clients", "nftables"], dpkg)).toEqual(["libvirt-clients", "nftables"]);
    expect(availableBytes("Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 264212084 23725776 82665136 23% /\n")).toBe(82665136 * 1024);
    expect(availableBytes("df: /opt: No such file or directory\n")).toBeUndefined();
    const builtin = "kernel/net/8021q/8021q.ko\n";
    const dep = "kernel/drivers/net/bonding/bonding.ko.xz: kernel/net/tls/tls.ko.xz\nkernel/net/openvswitch/openvswitch.ko.zst: kernel/net/nsh/nsh.ko.zst\n";
    expect(["8021q", "bonding", "openvswitch", "vxlan"].map((m) => moduleAvailable(m, builtin, dep))).toEqual([true, true, true, false]);
    expect(nodeMajor("v24.21.0\n")).toBe(24);
    expect(nodeMajor("bash: node: command not found")).toBeUndefined();
    const os = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n');
    expect(os).toMatchObject({ ID: "debian", PRETTY_NAME: "Debian GNU/Linux 12 (bookworm)" });
    expect(isDebianFamily(os)).toBe(true);
    expect(isDebianFamily(parseOsRelease("ID=ubuntu\nID_LIKE=debian\n"))).toBe(true);
    expect(isDebianFamily(parseOsRelease('ID="rocky"\nID_LIKE="rhel centos fedora"\n'))).toBe(false);
  });
});
