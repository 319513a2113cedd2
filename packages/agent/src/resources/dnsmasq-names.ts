import type { AllowedName } from "@netfleet/shared";

/**
 * dnsmasq lines for a network's allowed DNS names: which names are forwarded
 * to the upstream (`server=`), which are refused, and which answers join an
 * nft set (`nftset=`).
 *
 * Meaning (the inventory's): a plain name `static.example.org` is that name
 * only; `*.example.org` is every name below example.org (any depth), not
 * example.org itself.
 *
 * dnsmasq (dnsmasq(8) --server, 2.86+; checked with dnsmasq 2.90):
 * - `server=/example.org/U` matches example.org and all its subdomains;
 * - `server=/*.example.org/U` matches its subdomains only;
 * - `server=/*.example.org/` (no address) answers NXDOMAIN for them, locally;
 * - the most specific pattern wins, so `server=/a.example.org/U` beside
 *   `server=/*.example.org/` forwards a.example.org and refuses b.example.org;
 * - a name no pattern matches has no server (`no-resolv`): REFUSED.
 * So an exact name is `server=/N/U` plus `server=/*.N/` (its subdomains
 * NXDOMAIN) unless an allowed wildcard already covers them; a wildcard is
 * `server=/*.N/U`, its bare name left unmatched (REFUSED).
 *
 * `nftset=` takes no `*.` pattern (with dnsmasq 2.90 `nftset=/*.N/…` adds
 * nothing) and matches like `server=/N/`: a name and its subdomains, most
 * specific line first. With the DNS lines above a refused name has no
 * answer, so `nftset=/N/` adds only answers for allowed names. Its sets are
 * those of the entries with base N, and of every wildcard above N (a name
 * under N is also under that wildcard). Known excess: an exact name under
 * an allowed wildcard forwards its own subdomains (the wildcard allows
 * them), and their answers join the exact name's set as well.
 */
export function allowedNameLines(names: readonly AllowedName[], upstream: readonly string[], open: boolean): string[] {
  const entries = names.map((n) => ({ wild: n.name.startsWith("*."), base: n.name.replace(/^\*\./, ""), set: n.set }));
  const under = (name: string, base: string) => name.endsWith(`.${base}`);
  const wildBases = new Set(entries.filter((e) => e.wild).map((e) => e.base));
  const exactBases = new Set(entries.filter((e) => !e.wild).map((e) => e.base));
  const lines: string[] = [];
  if (!open) {
    for (const base of [...exactBases].sort()) {
      for (const u of upstream) lines.push(`server=/${base}/${u}`);
      // Its subdomains are refused, unless an allowed wildcard (on this name or above it) covers them.
      const covered = [...wildBases].some((w) => w === base || under(base, w));
      if (!covered) lines.push(`server=/*.${base}/`);
    }
    for (const base of [...wildBases].sort()) {
      if (exactBases.has(base)) continue; // server=/base/ above already forwards its subdomains
      for (const u of upstream) lines.push(`server=/*.${base}/${u}`);
    }
  }
  const bases = [...new Set(entries.filter((e) => e.set !== undefined).map((e) => e.base))].sort();
  for (const base of bases) {
    const sets = new Set<string>();
    for (const e of entries) {
      if (e.set !== undefined && (e.base === base || (e.wild && under(base, e.base)))) sets.add(e.set);
    }
    lines.push(`nftset=/${base}/${[...sets].sort().map((s) => `4#inet#netfleet#${s}`).join(",")}`);
  }
  return lines;
}
