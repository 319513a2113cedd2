/** Text layout helpers of `netfleet show`'s renderers (render.ts, render-counters.ts). Pure. */

/** A table: columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(rows: string[][], indent = "  "): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd());
}

/** `1234567` → `1.2M`, as `ip -h -s link` abbreviates (powers of 1000). */
export function human(n: number): string {
  if (n < 1000) return String(n);
  const units = ["k", "M", "G", "T", "P"];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)}${units[i]}`;
}
