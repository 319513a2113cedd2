export * from "./subjects.ts";
export * from "./messages.ts";
export * from "./signing.ts";
export { seal, open as openSealed, generateBoxKeys, welcomeContext, type SealedBox, type BoxKeys } from "./sealed-box.ts";
export * from "./join-token.ts";
export * from "./warnings.ts";
