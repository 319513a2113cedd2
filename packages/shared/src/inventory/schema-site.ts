import { z } from "zod";
import { cidr, cidrOrAddress, dnsLabel, dnsName, ipv4, json, NatsUrl } from "./schema-fields.ts";
import { siteRules } from "./schema-rules.ts";
import { IpfixSettings, SflowSettings } from "./schema-sampling.ts";

/** The `site` section: the site's name and domain, NATS servers, management network and site-wide gateway settings. */
export const SiteSettings = json(
  z.strictObject({
    name: dnsLabel.describe("Site name, a DNS label; the owner marker on everything netfleet creates (OVS external_ids, nft table, dnsmasq files)"),
    domain: dnsName.describe("DNS suffix: VMs resolve as <vm>.<network>.<domain>"),
    nats: z
      .array(NatsUrl.describe("A NATS server: nats://host:port, or tls://host:port for TLS"))
      .min(1)
      .describe("NATS server URLs the controller and the agents connect to (one server or the members of a cluster); at least one"),
    management: cidr.optional().describe("Management network of the hosts (a.b.c.d/len, host bits zero); no VM network may overlap it, no network reaches it, and every host's address must lie in it. Absent: not checked"),
    upstream_dns: z
      .array(ipv4.describe("A resolver's IPv4 address"))
      .default([])
      .describe("Resolvers dnsmasq on the gateway forwards to for networks with dns: open. Default: none (the backend's own resolv.conf)"),
    egress_deny: z
      .array(cidrOrAddress.describe("An IPv4 address or CIDR (host bits zero)"))
      .default([])
      .describe("Destinations (addresses or CIDRs) no network of the site reaches, whatever its egress; added to the ones always denied: the management network, 169.254.0.0/16 (link-local, cloud metadata), the site's other networks and the backend's external subnets. Default: none"),
    dns_max_ttl: z
      .number()
      .int()
      .min(1)
      .max(86400)
      .default(300)
      .describe("Seconds, 1-86400 (default 300): cap on the TTL dnsmasq caches and hands to VMs (dnsmasq --max-cache-ttl, --max-ttl). An address a VM got from an answer may sit in dnsmasq's cache and then in the VM's for up to this long each"),
    allow_vlan_1: z
      .boolean()
      .default(false)
      .describe("Allow VLAN id 1 for a network (default false). Most switches treat VLAN 1 as the native (untagged) VLAN of a trunk, so its frames leave untagged and mix with the management traffic; set true only when the site's trunks carry VLAN 1 tagged"),
    name_set_timeout: z
      .number()
      .int()
      .min(1)
      .max(604800)
      .default(3600)
      .describe("Seconds, 1-604800 (default 3600): how long an address stays in an allowed name's nft set after dnsmasq last put it there or a connection last used it; at least 2 x dns_max_ttl, so an address a VM still holds from a cached answer is still allowed"),
    sflow: SflowSettings.optional().describe("sFlow export (ovs-vswitchd.conf.db(5) sFlow table) from every OVS bridge of every vmhost (its VM network bridges and, in ovs-trunk mode, the trunk bridge: OVS samples a frame on the bridge where it enters the datapath), with the host's management address as agent address. Absent: none"),
    ipfix: IpfixSettings.optional().describe("Per-bridge IPFIX export (ovs-vswitchd.conf.db(5) IPFIX table) from every OVS bridge of every vmhost (as sflow). Absent: none"),
  }),
  siteRules,
);

/** The site settings as validated (defaults applied). */
export type SiteSettings = z.output<typeof SiteSettings>;
