/** The facts a simulated agent reports: a host with every kernel feature and current OVS/libvirt. */
export const simFacts = async () => ({
  interfaces: [],
  kernel: { "8021q": { loaded: true, available: true }, bonding: { loaded: true, available: true }, openvswitch: { loaded: true, available: true } },
  ovsVersion: "3.1.0",
  libvirtVersion: "9.0.0",
});
