import { InventoryError, quoteToken } from "../errors.ts";
import { DNS_LABEL, NETWORK_NAME } from "../names.ts";
import { parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import type { SourceFile } from "./source.ts";
import type { GroupSpec, HostSpec, InventoryFile, NetworkSpec } from "./schema.ts";
import { SiteProblems, type Located, type Ref } from "./report.ts";
import { resolveNetworks } from "./networks.ts";
import { resolveHosts } from "./hosts.ts";
import { checkGateway } from "./check-gateway.ts";
import { checkVmPlacement } from "./check-hosts.ts";
import { checkSiteServers } from "./check-addresses.ts";
import { checkInterfaceNames } from "./check-names.ts";
import { checkUplinkModes } from "./check-uplink.ts";
import { resolveMirrors } from "./check-mirrors.ts";
import { checkVxlan } from "./check-vxlan.ts";
import { checkSampling } from "./check-sampling.ts";
import type { Host, Inventory } from "./model.ts";
import type { ProfileSpec } from "./schema-profiles.ts";
import { applyProfiles, profileReporter } from "./profiles.ts";
import { resolveVmPolicies } from "./check-profiles.ts";

/** One inventory file that passed its schema: the parsed YAML (for positions) and its data. */
export interface ParsedFile {
  file: SourceFile;
  data: InventoryFile;
}

/**
 * The site-wide rules a per-file schema cannot see, run over every file of
 * the folder together: one `site`, names defined once across files,
 * networks and hosts resolved (networks.ts, hosts.ts), then the checks
 * across them (check-*.ts). Returns the merged inventory, sorted by name.
 * Throws `InventoryError` with every problem, by file, line and column.
 */
export function checkSite(dir: string, dirName: string, parsed: ParsedFile[]): Inventory {
  const r = new SiteProblems(dirName);
  const siteEntries = parsed.filter((p) => p.data.site !== undefined);
  if (siteEntries.length === 0) r.folder("site", "no file of this folder defines `site`");
  for (const extra of siteEntries.slice(1)) {
    r.report({ file: extra.file, path: ["site"] }, `site is already defined at ${r.where({ file: siteEntries[0]!.file, path: ["site"] })}`, { key: true });
  }
  const siteRef: Ref | undefined = siteEntries[0] ? { file: siteEntries[0].file, path: ["site"] } : undefined;
  const site = siteEntries[0]?.data.site;

  const profiles = collect<ProfileSpec>(r, parsed, "profiles", DNS_LABEL, "a lowercase DNS label");
  const profiled = applyProfiles(r, profiles, collect<NetworkSpec>(r, parsed, "networks", NETWORK_NAME, "1-12 of a-z 0-9 -, starting with a letter (it becomes br-<name>)"));
  const { networks, origins } = profiled;
  const rp = profileReporter(r, profiles, profiled);
  const groups = collect<GroupSpec>(r, parsed, "groups", DNS_LABEL, "a lowercase DNS label");
  const hostEntries = collect<HostSpec>(r, parsed, "hosts", DNS_LABEL, "a lowercase DNS label");

  const management = site?.management ? (parseIpv4Cidr(site.management) as Ipv4Cidr) : undefined;
  const resolvedNetworks = resolveNetworks(rp, networks, management, siteRef, site?.allow_vlan_1 ?? false);
  const hosts = resolveHosts(r, hostEntries, groups, networks, management);
  checkBackend(r, hostEntries, hosts);
  checkVmPlacement(r, networks, hosts, new Set(hostEntries.map((h) => h.name)));
  checkInterfaceNames(r, networks, hosts);
  checkUplinkModes(r, hosts, { management: site?.management, siteRef });
  checkVxlan(r, networks, hosts);
  if (site && siteRef) checkSiteServers(r, { site, siteRef, networks });
  if (site && siteRef) checkGateway(rp, { site, siteRef, networks, resolved: resolvedNetworks, hosts });
  resolveVmPolicies(r, { profiles, networks, resolved: resolvedNetworks, hosts, origins });
  if (site && siteRef) checkSampling(r, { site, siteRef, networks });

  const mirrors = resolveMirrors(r, parsed.map((p) => ({ file: p.file, mirrors: p.data.mirrors })), networks, resolvedNetworks);

  if (!site || r.list.length > 0) throw new InventoryError(r.sorted());
  return { dir, site, networks: resolvedNetworks, hosts: hosts.map((h) => h.value), ...(mirrors.length > 0 ? { mirrors } : {}) };
}

/** Entries of one section across all files, sorted by name; a bad name or a name defined twice is a problem. */
function collect<T>(r: SiteProblems, parsed: ParsedFile[], section: "networks" | "groups" | "hosts" | "profiles", nameRule: RegExp, nameHelp: string): Located<T>[] {
  const seen = new Map<string, Located<T>>();
  for (const { file, data } of parsed) {
    const entries = (data[section] ?? {}) as Record<string, T>;
    for (const [name, value] of Object.entries(entries)) {
      const ref: Ref = { file, path: [section, name] };
      if (!nameRule.test(name)) {
        r.report(ref, `invalid name ${quoteToken(name)}: ${nameHelp}`, { key: true });
        continue;
      }
      const first = seen.get(name);
      if (first) {
        r.report(ref, `${section.slice(0, -1)} ${quoteToken(name)} is already defined at ${r.where(first.ref)}`, { key: true });
        continue;
      }
      seen.set(name, { name, value, ref });
    }
  }
  return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * Exactly one backend, and at least one host. "No backend" is said only
 * when nothing else is wrong so far: a host whose role failed to resolve
 * may be the backend.
 */
function checkBackend(r: SiteProblems, hostEntries: Located<HostSpec>[], hosts: Located<Host>[]): void {
  const backends = hosts.filter((h) => h.value.role === "backend");
  if (hostEntries.length > 0 && backends.length === 0 && r.list.length === 0) {
    r.report(hostEntries[0]!.ref, "the site has no backend host; exactly one host must have role: backend", { key: true });
  }
  for (const extra of backends.slice(1)) {
    r.report(extra.ref, `a site has exactly one backend; ${backends[0]!.name} is already the backend`, { key: true });
  }
  if (hostEntries.length === 0) r.folder("hosts", "the site has no hosts");
}
