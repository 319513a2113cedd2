/**
 * The shape of a mutation operator: a seeded fast-check arbitrary of
 * mutations of one kind, each turning the valid baseline site into one that
 * `netfleet validate` must refuse (exit 2, a located message, nothing
 * echoed from outside the folder).
 */
import type fc from "fast-check";
import type { Site } from "./site.ts";

/** The groups of broken or hostile input. */
export type Category = "files" | "yaml" | "names" | "addresses" | "vlans" | "ports" | "uplinks" | "types";

export interface Mutation {
  /** What was changed, in one line (values JSON-quoted), e.g. `hosts.hv1.uplink.bond = "up"`. */
  detail: string;
  /** Changes the site in place. */
  apply(site: Site): void;
}

export interface Operator {
  category: Category;
  /** Unique within the catalog, e.g. `bond-iproute2-keyword`. */
  name: string;
  /** How many distinct samples to draw (fewer when its space is smaller). */
  variants: number;
  arb: fc.Arbitrary<Mutation>;
}

/** An operator whose samples are `arb`'s values turned into mutations by `build`. */
export function op<T>(category: Category, name: string, variants: number, arb: fc.Arbitrary<T>, build: (v: T) => Mutation): Operator {
  return { category, name, variants, arb: arb.map(build) };
}

/** `JSON.stringify`, for details, with C1 controls, bidi controls and line separators escaped too. */
export const q = (v: unknown): string =>
  (JSON.stringify(v) ?? String(v)).replace(/[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
