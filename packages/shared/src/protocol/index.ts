export * from "./subjects.ts";
export * from "./messages.ts";
export { NETFLEET_RELEASE, PROTOCOL_VERSION, PROTOCOL_UNDERSTOOD, ProtocolVersionError, parseProtocolVersion, type ProtocolVersion } from "./version.ts";
export * from "./signing.ts";
export { seal, open as openSealed, generateBoxKeys, welcomeContext, type SealedBox, type BoxKeys } from "./sealed-box.ts";
export * from "./join-token.ts";
export * from "./warnings.ts";
export * from "./agent-upgrade.ts";
export * from "./show.ts";
