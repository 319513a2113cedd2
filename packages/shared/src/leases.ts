import { z } from "zod";
import { ParseError } from "./errors.ts";
import { decodeMessage } from "./protocol/messages.ts";
import { Ipv4Address, isIpv4 } from "./ipv4.ts";
import { DNS_LABEL, MAC_ADDRESS, NETWORK_NAME } from "./names.ts";

/**
 * DHCP leases as the gateway holds them, carried from the backend (where
 * dnsmasq hands them out) to the VM hosts (where the OpenFlow rules of a VM
 * port pin its source address to the lease it holds).
 *
 * One lease: the client MAC (lowercase), the IPv4 address, and when it ends
 * in seconds since the epoch (0: never, dnsmasq's `infinite`).
 */
export const Lease = z.strictObject({
  mac: z.string().regex(MAC_ADDRESS).transform((m) => m.toLowerCase()),
  ip: Ipv4Address,
  expires: z.number().int().min(0),
});

/**
 * Every network's leases from one backend: the value of that backend's key
 * in the `nf_<site>_leases` KV bucket, and (one network per file) what a VM
 * host's agent keeps in `<runDir>/leases/<network>.json` for its
 * vm-port-policy resources to read.
 */
export const LeaseTable = z.strictObject({
  /** The backend host that published it. */
  host: z.string().regex(DNS_LABEL),
  /** When it was read from dnsmasq's lease files, epoch ms. */
  at: z.number().int().min(0),
  networks: z.record(z.string().regex(NETWORK_NAME), z.array(Lease)),
});

/** One network's leases as a VM host keeps them on disk. */
export const NetworkLeases = z.strictObject({
  network: z.string().regex(NETWORK_NAME),
  host: z.string().regex(DNS_LABEL),
  at: z.number().int().min(0),
  leases: z.array(Lease),
});

export type Lease = z.output<typeof Lease>;
export type LeaseTable = z.output<typeof LeaseTable>;
export type NetworkLeases = z.output<typeof NetworkLeases>;

/**
 * Parses a dnsmasq lease file (`--dhcp-leasefile`): one lease per line,
 * `<expiry epoch s> <mac> <ip> <hostname|*> <client-id|*>`; IPv6 lines (a
 * `duid` line, then addresses with a colon) are skipped. Source:
 * dnsmasq's lease.c (lease_update_file), the format stable since 2.x.
 *
 * @throws ParseError naming the line when a line is not a lease.
 */
export function parseDnsmasqLeases(text: string, source = "dnsmasq leases"): Lease[] {
  const out: Lease[] = [];
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("duid ")) continue;
    const [expiry, mac, ip] = line.split(/\s+/);
    if (ip?.includes(":")) continue; // DHCPv6
    if (!expiry || !/^\d+$/.test(expiry) || !mac || !MAC_ADDRESS.test(mac) || !ip || !isIpv4(ip)) {
      throw new ParseError(source, `line ${i + 1} is not a lease: ${JSON.stringify(line.slice(0, 80))}`);
    }
    out.push({ mac: mac.toLowerCase(), ip, expires: Number(expiry) });
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

/** The leases still valid at `nowSeconds` (epoch s); `expires: 0` never ends. */
export function liveLeases(leases: readonly Lease[], nowSeconds: number): Lease[] {
  return leases.filter((l) => l.expires === 0 || l.expires > nowSeconds);
}

/** Decodes a VM host's leases file. @throws DecodeError naming the file and field. */
export function decodeNetworkLeases(source: string, text: string): NetworkLeases {
  return decodeMessage(NetworkLeases, source, text);
}
