import type { Readable } from "node:stream";

/**
 * Reads a child's stdout as JSON lines: `onLine` gets each complete line and
 * its parsed value, or `undefined` when the line is not JSON. A partial line
 * waits for the rest. Shared by the test harnesses that run agents and
 * controllers as processes logging one JSON object per line.
 */
export function readJsonLines(stream: Readable, onLine: (value: unknown, line: string) => void): void {
  let buffer = "";
  stream.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        value = undefined;
      }
      onLine(value, line);
    }
  });
}
