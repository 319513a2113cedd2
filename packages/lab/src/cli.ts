import { enableCompileCache } from "node:module";

// Node keeps the compiled (type-stripped) modules on disk: a later start skips that work.
enableCompileCache();
const { main } = await import("./program.ts");

// `netfleet-lab check | head` closes the pipe early: that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`netfleet-lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
});
