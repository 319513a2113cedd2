import { parseHostToken } from "@netfleet/shared";
import { mintHostToken } from "../enrollment/host-tokens.ts";
import { ControllerHome } from "../store/home.ts";

/**
 * The token each host's agent.json gets from `netfleet bootstrap`: a host
 * token minted for that host (it enrolls the host once, approved at once;
 * see enrollment/host-tokens.ts), or the site's join token (the host only
 * asks to join and waits for `netfleet hosts approve`).
 */
export interface AgentTokens {
  readonly kind: "host" | "site";
  /** The token to write for `host`: minted now (a fresh nonce each call) or the site's. @throws Error when it cannot be minted. */
  forHost(host: string): Promise<string>;
  /**
   * Whether the token of an agent.json already in place may stay for `host`
   * (so a re-run changes nothing and does not restart the agent): the site's
   * token itself; or a host token for `host` that is still good for at least
   * KEEP_MARGIN_MS or whose agent has enrolled (`enrolled`: its credentials
   * exist; the token is spent then and no longer needed).
   */
  keeps(existing: string, host: string, enrolled: boolean): boolean;
}

/** A host token with less left than this is replaced: the agent may not start before it expires. */
export const KEEP_MARGIN_MS = 3600_000;

/** The site's join token for every host (`--token-file`). */
export function siteTokens(token: string): AgentTokens {
  return { kind: "site", forHost: () => Promise.resolve(token), keeps: (existing) => existing === token };
}

/**
 * Host tokens minted from the controller's state dir (its secrets.json and
 * the host-token key in credentials/; no running serve needed), each valid
 * for `ttlMs`. Reads the secrets now, so a wrong state dir is reported before
 * anything is written.
 * @throws Error "no controller state in DIR ..." (ControllerHome.secrets), or when they belong to another site.
 */
export async function hostTokens(stateDir: string, site: string, ttlMs: number, now: () => number = Date.now): Promise<AgentTokens> {
  const home = new ControllerHome(stateDir);
  const secrets = await home.secrets(site, { create: false });
  return {
    kind: "host",
    forHost: async (host) => (await mintHostToken(home.credentialsDir, { site, enrollPassword: secrets.enrollment.enrollPassword, host, ttlMs, now: now() })).token,
    keeps: (existing, host, enrolled) => {
      const parts = parseHostToken(existing);
      if (!parts || parts.host !== host || parts.enrollPassword !== secrets.enrollment.enrollPassword) return false;
      return enrolled || parts.expiresAt * 1000 > now() + KEEP_MARGIN_MS;
    },
  };
}
