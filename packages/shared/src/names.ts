/**
 * Names that reach system commands. Each pattern is a whitelist: nothing
 * outside it can become part of an argv, so no name can smuggle an option,
 * a path or whitespace into a command.
 */

/** Linux allows 15 bytes (IFNAMSIZ - 1) for an interface name. */
export const IFNAME_MAX = 15;

/** Interface names: letters, digits, `_`, `-`, `.`; must not start with `-` or `.`. */
export const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Network names become `br-<name>`, `pu-<name>`, `pb-<name>`, `gw-<name>`: at most 12 characters. */
export const NETWORK_NAME = /^[a-z][a-z0-9-]{0,11}$/;
export const NETWORK_NAME_MAX = 12;

/** Host, VM, group and site names: DNS labels. */
export const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS name made of labels, e.g. `pypi.org` or `fleet.example`. */
export const DNS_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * An allow-listed DNS name: a plain name (`static.example.org`: exactly that
 * name) or a wildcard (`*.example.org`: its subdomains, not the name
 * itself). A wildcard needs two or more labels after `*.` (no `*.org`).
 */
export const DNS_NAME_OR_WILDCARD = new RegExp(`^(?:\\*\\.(?=[^.]+\\.))?${DNS_NAME.source.slice(1)}`);

/** Unicast MAC address, lower or upper case hex with colons. */
export const MAC_ADDRESS = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

export function isUnicastMac(mac: string): boolean {
  return MAC_ADDRESS.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

export function bridgeName(network: string): string {
  return `br-${network}`;
}

export function vlanInterfaceName(bond: string, vlan: number): string {
  return `${bond}.${vlan}`;
}

/** Patch port on the trunk bridge (uplink side) and on the network bridge (bridge side). */
export function patchPortNames(network: string): { uplink: string; bridge: string } {
  return { uplink: `pu-${network}`, bridge: `pb-${network}` };
}

/** Tagged OVS internal port holding a gateway address in ovs-trunk mode. */
export function gatewayPortName(network: string): string {
  return `gw-${network}`;
}

/** Throws unless `name` is a safe interface name; used right before building an argv. */
export function assertInterfaceName(name: string): string {
  if (!INTERFACE_NAME.test(name) || Buffer.byteLength(name) > IFNAME_MAX) {
    throw new TypeError(`unsafe interface name ${JSON.stringify(name)}`);
  }
  return name;
}
