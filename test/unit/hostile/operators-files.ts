/**
 * File-level operators: what sits in the site folder is not a regular YAML
 * file inside it. Symlinks out of the folder (to a "secret" carrying the
 * run's marker, to devices, to /proc), FIFOs, directories named *.yaml,
 * files over the size cap.
 */
import fc from "fast-check";
import { op, q, type Operator } from "./operator.ts";
import { SECRET_FORMS, type Site } from "./site.ts";

const MiB = 1024 * 1024;

/** Cap the issue asks for is "a few MB"; every size here is above 4 MiB. */
export const OVERSIZE = [4 * MiB + 1, 5 * MiB, 6 * MiB] as const;

/** A valid networks.yaml padded to `size` bytes with comments or blank lines. */
function padded(site: Site, size: number, shape: "one-comment" | "comment-lines" | "blank-lines"): string {
  const base = site.text("networks.yaml");
  const room = size - base.length;
  if (shape === "one-comment") return base + "#" + "x".repeat(room - 2) + "\n";
  if (shape === "blank-lines") return base + "\n".repeat(room);
  const line = "# padding padding padding padding padding padding padding padding\n";
  const n = Math.ceil(room / line.length);
  return base + line.repeat(n);
}

export const fileOperators: Operator[] = [
  op(
    "files",
    "symlink-to-secret-outside",
    16,
    fc.record({
      name: fc.constantFrom("zz-extra.yaml", "00.yml", "hosts.yaml", "networks.yaml", "secret.yaml"),
      form: fc.constantFrom(...SECRET_FORMS),
      relative: fc.boolean(),
    }),
    ({ name, form, relative }) => ({
      detail: `${q(name)} -> secret file of form ${form} outside the folder (${relative ? "relative" : "absolute"} link)`,
      apply: (s) => s.files.set(name, { kind: "symlink", target: "", secret: { form, relative } }),
    }),
  ),
  op("files", "fifo-named-yaml", 2, fc.constantFrom("zz.yaml", "00-pipe.yml"), (name) => ({
    detail: `${q(name)} is a FIFO`,
    apply: (s) => s.files.set(name, { kind: "fifo" }),
  })),
  op(
    "files",
    "symlink-to-device-or-proc",
    8,
    fc.record({
      target: fc.constantFrom("/dev/zero", "/dev/urandom", "/dev/null", "/dev/full", "/dev/stdin", "/proc/self/environ", "/proc/self/cmdline", "/proc/self/status"),
      name: fc.constantFrom("zz.yaml", "site.yaml"),
    }),
    ({ target, name }) => ({
      detail: `${q(name)} -> ${target}`,
      apply: (s) => s.files.set(name, { kind: "symlink", target }),
    }),
  ),
  op(
    "files",
    "oversize-file",
    4,
    fc.record({ size: fc.constantFrom(...OVERSIZE), shape: fc.constantFrom("one-comment" as const, "comment-lines" as const, "blank-lines" as const) }),
    ({ size, shape }) => ({
      detail: `networks.yaml valid but ${size} bytes (${shape})`,
      apply: (s) => s.setText("networks.yaml", padded(s, size, shape)),
    }),
  ),
  op(
    "files",
    "symlink-chain-to-secret",
    4,
    fc.record({ form: fc.constantFrom(...SECRET_FORMS), via: fc.constantFrom("link.lnk", "sub") }),
    ({ form, via }) => ({
      detail: `"zz.yaml" -> ${q(via)} (inside the folder) -> secret file of form ${form} outside`,
      apply: (s) => {
        s.files.set(via, { kind: "symlink", target: "", secret: { form, relative: false } });
        s.files.set("zz.yaml", { kind: "symlink", target: via });
      },
    }),
  ),
  op("files", "symlink-dangling", 2, fc.constantFrom("missing.yaml", "/nonexistent/netfleet/x.yaml"), (target) => ({
    detail: `"zz.yaml" -> ${q(target)} (does not exist)`,
    apply: (s) => s.files.set("zz.yaml", { kind: "symlink", target }),
  })),
  op("files", "symlink-loop", 2, fc.constantFrom("self", "pair"), (form) => ({
    detail: form === "self" ? `"zz.yaml" -> "zz.yaml"` : `"zz.yaml" -> "zy.yml" -> "zz.yaml"`,
    apply: (s) => {
      if (form === "self") s.files.set("zz.yaml", { kind: "symlink", target: "zz.yaml" });
      else {
        s.files.set("zz.yaml", { kind: "symlink", target: "zy.yml" });
        s.files.set("zy.yml", { kind: "symlink", target: "zz.yaml" });
      }
    },
  })),
  op("files", "symlink-to-directory", 2, fc.constantFrom("/etc", ".."), (target) => ({
    detail: `"zz.yaml" -> ${q(target)} (a directory outside the folder)`,
    apply: (s) => s.files.set("zz.yaml", { kind: "symlink", target }),
  })),
  op(
    "files",
    "directory-named-yaml",
    3,
    fc.record({ name: fc.constantFrom("zz.yaml", "hosts.d.yaml"), inner: fc.constantFrom<Record<string, string>>({}, { "x.yaml": "site: {}\n" }, { "deep.yaml": "networks: {}\n" }) }),
    ({ name, inner }) => ({
      detail: `${q(name)} is a directory holding ${q(Object.keys(inner))}`,
      apply: (s) => s.files.set(name, { kind: "dir", inner }),
    }),
  ),
  op("files", "sparse-huge-file", 2, fc.constantFrom("zz.yaml", "big.yml"), (name) => ({
    detail: `${q(name)} is a sparse file of 3 GiB`,
    apply: (s) => s.files.set(name, { kind: "sparse", size: 3 * 1024 * MiB }),
  })),
];
