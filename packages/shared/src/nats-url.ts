import { NATS_URL_PATTERN } from "./inventory/schema-patterns.ts";

/**
 * The one NATS server URL check used at every boundary (inventory, CLI
 * flags, agent config, bootstrap layout): `nats://host:port` or
 * `tls://host:port`, host of letters, digits, dots and hyphens, port
 * 1-65535. nats.js would accept more (user:pass@, no port), but a URL we
 * write into a host's config must be one every agent and nats-server reads
 * the same way.
 */
export const NATS_URL = new RegExp(NATS_URL_PATTERN);

/** True when `text` is a NATS server URL as {@link NATS_URL} defines it. */
export function isNatsUrl(text: string): boolean {
  return NATS_URL.test(text);
}

/**
 * Parses a comma-separated list such as `--nats nats://a:4222,nats://b:4222`.
 * Returns the URLs (at least one, surrounding blanks trimmed).
 * @throws Error naming the first URL that is not valid, or an empty list.
 */
export function parseNatsUrls(text: string): string[] {
  const urls = text.split(",").map((u) => u.trim()).filter(Boolean);
  if (urls.length === 0) throw new Error("takes nats://host:port[,nats://host:port...]");
  const bad = urls.find((u) => !isNatsUrl(u));
  if (bad !== undefined) throw new Error(`${JSON.stringify(bad.slice(0, 80))} is not nats://host:port or tls://host:port (port 1-65535)`);
  return urls;
}
