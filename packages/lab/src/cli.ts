import { enableCompileCache } from "node:module";

// Node keeps the compiled (type-stripped) modules on disk: a later start skips that work.
enableCompileCache();
const { runMain } = await import("@netfleet/shared/cli");
const { main } = await import("./program.ts");

await runMain("netfleet-lab", main);
