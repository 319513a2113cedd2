import { z } from "zod";
import { DNS_LABEL, DNS_NAME, DNS_NAME_OR_WILDCARD, IFNAME_MAX, INTERFACE_NAME, IPROUTE2_KEYWORDS } from "../names.ts";
import { parsePortRange } from "./ports.ts";
import { isIpv4, parseIpv4Cidr } from "../ipv4.ts";
import { isNatsUrl } from "../nats-url.ts";
import { CIDR_OR_ADDRESS_PATTERN, CIDR_PATTERN, interfaceNamePattern, IPV4_PATTERN, NATS_URL_PATTERN, PORT_RANGE_PATTERN } from "./schema-patterns.ts";

/**
 * The value types of inventory files (addresses, CIDRs, interface and DNS
 * names, ports, durations, NATS URLs), each a zod validator with its
 * message and, through `json()`, the JSON Schema pattern an editor checks.
 * The sections (schema-site.ts, schema-network.ts, schema-host.ts) are
 * built from these.
 */

/**
 * JSON-Schema-only keywords on a zod schema; zod validation is unchanged.
 * An `id` puts the schema once under `definitions` (the long patterns:
 * CIDRs, interface names), referenced from each place that uses it.
 */
export function json<T extends z.ZodType>(schema: T, keywords: Record<string, unknown>): T {
  return schema.meta(keywords);
}

const IPV4_HELP = "must be an IPv4 address (a.b.c.d)";
/** A dotted-quad IPv4 address (`isIpv4`). */
export const ipv4 = json(z.string().refine(isIpv4, { message: IPV4_HELP }), { pattern: IPV4_PATTERN, patternErrorMessage: `${IPV4_HELP}, each part 0-255 without leading zeros` });
/** A network `a.b.c.d/len`, host bits zero, with `parseIpv4Cidr`'s message for what is wrong. */
export const cidr = json(
  z.string().check((ctx) => {
    const parsed = parseIpv4Cidr(ctx.value);
    if (typeof parsed === "string") ctx.issues.push({ code: "custom", message: parsed, input: ctx.value });
  }),
  { id: "cidr", pattern: CIDR_PATTERN, patternErrorMessage: "must be an IPv4 network a.b.c.d/len: len 0-32 and the host bits zero (10.1.0.0/24, not 10.1.0.1/24)" },
);
const IFNAME_HELP = "must be a Linux interface name: 1-15 of A-Z a-z 0-9 _ . -, not starting with . or -";
const interfaceName = json(z.string().regex(INTERFACE_NAME, IFNAME_HELP), { maxLength: IFNAME_MAX, patternErrorMessage: IFNAME_HELP });
const KEYWORD_HELP = "not an iproute2 keyword or a prefix of one (up, h for help, mast for master, dev, link...), which ip link would read as that option";
/** A name the user gives an interface netfleet creates or configures (bond, trunk bridge): no iproute2 keyword. */
export const ownInterfaceName = json(interfaceName, { id: "interface_name", pattern: interfaceNamePattern(IPROUTE2_KEYWORDS), patternErrorMessage: `${IFNAME_HELP}; ${KEYWORD_HELP}` });
/** A NIC of the host (bond member, external interface): no iproute2 keyword, not lo or ovs-system (every host has them). */
export const hostInterfaceName = json(interfaceName, {
  id: "nic_name",
  pattern: interfaceNamePattern(IPROUTE2_KEYWORDS, ["lo", "ovs-system"]),
  patternErrorMessage: `${IFNAME_HELP}; ${KEYWORD_HELP}; not lo or ovs-system`,
});
const DNS_LABEL_HELP = "must be a lowercase DNS label (a-z, 0-9, -; at most 63)";
/** A lowercase DNS label: names of sites, hosts, groups and VMs. */
export const dnsLabel = json(z.string().regex(DNS_LABEL, DNS_LABEL_HELP), { maxLength: 63, patternErrorMessage: DNS_LABEL_HELP });
const DNS_NAME_HELP = "must be a lowercase DNS name such as example.org";
/** A lowercase DNS name (`example.org`). */
export const dnsName = json(z.string().regex(DNS_NAME, DNS_NAME_HELP), { maxLength: 253, patternErrorMessage: DNS_NAME_HELP });
/** A TCP or UDP port, 1-65535. */
export const port = z.number().int().min(1).max(65535);
const ALLOWED_NAME_HELP = "must be a lowercase DNS name (example.org: exactly that name) or a wildcard (*.example.org: its subdomains only)";
/** An allow-listed name: `example.org` exactly, or `*.example.org` its subdomains. */
export const allowedName = json(z.string().regex(DNS_NAME_OR_WILDCARD, ALLOWED_NAME_HELP), { patternErrorMessage: ALLOWED_NAME_HELP });
/** The message for a value that must be an address or a CIDR. */
export const CIDR_OR_ADDRESS_HELP = "must be an IPv4 address or CIDR (a.b.c.d/len, no host bits)";
/** An IPv4 address or a CIDR with the host bits zero (egress_deny, port-forward sources). */
export const cidrOrAddress = json(
  z.string().refine((s) => isIpv4(s) || typeof parseIpv4Cidr(s) !== "string", { message: CIDR_OR_ADDRESS_HELP }),
  { id: "cidr_or_address", pattern: CIDR_OR_ADDRESS_PATTERN, patternErrorMessage: CIDR_OR_ADDRESS_HELP },
);
const PORT_RANGE_HELP = 'must be a port 1-65535 or a range "first-last" such as "8000-8100"';
/** A port (`22`) or an inclusive range (`"8000-8100"`), 1-65535; see ports.ts. */
const portOrRange = json(
  z.union([z.number(), z.string()]).check((ctx) => {
    const r = parsePortRange(ctx.value);
    if (typeof r === "string") ctx.issues.push({ code: "custom", message: r, input: ctx.value });
  }),
  {
    description: "A port (22) or an inclusive range of ports written as a string (\"8000-8100\"), 1-65535",
    anyOf: [
      { type: "integer", minimum: 1, maximum: 65535, description: "A port, 1-65535 (TCP and UDP ports are 16-bit; port 0 is reserved: RFC 793, RFC 768)" },
      { type: "string", pattern: PORT_RANGE_PATTERN, patternErrorMessage: PORT_RANGE_HELP, description: 'A port or an inclusive range "first-last" such as "8000-8100", each 1-65535; the range may not end before it starts (only `netfleet validate` checks that)' },
    ],
  },
);
/** A transport protocol of a port: tcp or udp. */
export const proto = z.enum(["tcp", "udp"]);
/** Protocol and ports, the shape of gateway_services and reserved_ports entries. */
export const PortSet = z.strictObject({
  proto: proto.default("tcp").describe("tcp or udp (default tcp)"),
  ports: z.array(portOrRange).min(1).describe('Ports and inclusive ranges, 1-65535: [22, "8000-8100"]; at least one'),
});
const DURATION_HELP = 'must be a duration such as 30m, 12h, 1d or "infinite"';
/** A dnsmasq lease time: a number with s, m, h, d or w, or `infinite`. */
export const duration = json(z.string().regex(/^(?:\d+[smhdw]|infinite)$/, DURATION_HELP), { patternErrorMessage: DURATION_HELP });

const NATS_URL_HELP = "must be nats://host:port or tls://host:port";
/** A NATS server URL; the port 1-65535 (a port of 0 or above 65535 would only fail at connect time, on every host). */
export const NatsUrl = json(
  // The shape first (for its message), then the one NATS URL check (port 1-65535).
  z.string().regex(/^(?:nats|tls):\/\/[A-Za-z0-9.-]+:\d{1,5}$/, { message: NATS_URL_HELP, abort: true }).refine(isNatsUrl, "the port must be 1-65535"),
  { pattern: NATS_URL_PATTERN, patternErrorMessage: `${NATS_URL_HELP}, the port 1-65535` },
);

/** A port set as validated (proto defaulted). */
export type PortSet = z.output<typeof PortSet>;
