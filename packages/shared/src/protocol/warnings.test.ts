import { describe, expect, it } from "vitest";
import { warningsOf } from "./warnings.ts";

describe("warnings in resource comments", () => {
  it("finds a warning at the start of a comment or after the engine's `changed; `, to the comment's end", () => {
    const results = [
      { id: "nft-table[netfleet]", comment: "foreign-drop: table ip filter chain FORWARD (policy drop) drops forwarded traffic we accept; see nft list table ip filter" },
      { id: "nft-table[other]", comment: "changed; foreign-drop: table inet fw chain fwd drops 10.20.0.0/24" },
      { id: "sysctl[x]", comment: "warning: value set by another tool" },
    ];
    expect(warningsOf(results)).toEqual([
      { id: "nft-table[netfleet]", message: "foreign-drop: table ip filter chain FORWARD (policy drop) drops forwarded traffic we accept; see nft list table ip filter" },
      { id: "nft-table[other]", message: "foreign-drop: table inet fw chain fwd drops 10.20.0.0/24" },
      { id: "sysctl[x]", message: "warning: value set by another tool" },
    ]);
  });

  it("ordinary comments, a prefix inside a word, and results without a comment are no warnings", () => {
    expect(
      warningsOf([
        { id: "a", comment: "in desired state" },
        { id: "b", comment: "changed" },
        { id: "c", comment: "exists, not ours, matches (no-foreign-drop: seen)" },
        { id: "d" },
        { id: "e", comment: "changed; in desired state" },
      ]),
    ).toEqual([]);
  });
});
