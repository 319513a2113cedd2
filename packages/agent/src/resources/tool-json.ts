import type { z } from "zod";
import { ParseError } from "@netfleet/shared";

/**
 * A tool's JSON output, checked against `schema`. Throws ParseError naming
 * `tool` when the output is not JSON, or with the first schema issue (its path).
 */
export function parseJson<T>(tool: string, stdout: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch (err) {
    throw new ParseError(tool, `not JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ParseError(tool, `${issue.path.join(".") || "(top)"}: ${issue.message}`);
  }
  return parsed.data;
}
