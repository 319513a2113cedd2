import { agentInboxPrefix, encodeMessage, seal, welcomeContext, welcomeSubject, type AgentCredentials, type Welcome } from "@netfleet/shared";
import type { StoredCredential } from "../store/credentials.ts";
import type { EnrollmentServiceOptions } from "./options.ts";

/** What a welcome (and a rekey) hands an agent: its site, host, NATS user, password and inbox prefix, and the key that signs its assignments. */
export function welcomeContent(o: Pick<EnrollmentServiceOptions, "site" | "signing">, credential: StoredCredential): AgentCredentials {
  return {
    site: o.site,
    host: credential.host,
    user: credential.user,
    password: credential.password,
    inboxPrefix: agentInboxPrefix(o.site, credential.host),
    signingKey: { keyId: o.signing.keyId, publicKeyPem: o.signing.publicKeyPem },
  };
}

/**
 * Seals and sends welcomes (`nf.<site>.welcome.<claimed name>`, sealed to the credential's agent key). The sealed
 * message is kept per host and sent as it is again while the credential, claimed name and signing key are the
 * same: every agent announces itself on each fresh connection (fleet/agent.ts attach), and one X25519 key pair,
 * ECDH and HKDF per announcement was a fleet's enrollment CPU spent twice. `o` is read at each send (the signing
 * key as it is then).
 */
export class Welcomes {
  private readonly o: Pick<EnrollmentServiceOptions, "site" | "signing" | "nc">;
  private readonly held = new Map<string, { claimedName: string; credential: StoredCredential; keyId: string; data: Uint8Array }>();

  constructor(o: Pick<EnrollmentServiceOptions, "site" | "signing" | "nc">) {
    this.o = o;
  }

  /** Sends `credential`'s welcome to the agent that claimed `claimedName`. Core NATS publish: throws only on a closed connection. */
  send(claimedName: string, credential: StoredCredential): void {
    const { site, signing } = this.o;
    const held = this.held.get(credential.host);
    let data = held && held.claimedName === claimedName && held.credential === credential && held.keyId === signing.keyId ? held.data : undefined;
    if (!data) {
      // Sealed as the wire encoding (with its protocol version), so the agent decodes it like any message.
      const box = seal(credential.agentKey, new TextDecoder().decode(encodeMessage(welcomeContent(this.o, credential))), welcomeContext(site, claimedName));
      const welcome: Welcome = { kind: "welcome", site, hostname: claimedName, ...box };
      data = encodeMessage(welcome);
      this.held.set(credential.host, { claimedName, credential, keyId: signing.keyId, data });
    }
    this.o.nc.publish(welcomeSubject(site, claimedName), data);
  }
}
