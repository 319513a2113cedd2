import { formatProblem, type InputProblem } from "../errors.ts";
import type { DocPath, SourceFile } from "./source.ts";

/**
 * How the site checks point at what they refuse: a place in a file (`Ref`),
 * a named entry with its place (`Located`), and the `Reporter` every check
 * reports through. A leaf of the inventory modules: it imports no check,
 * so the checks depend on it and the loader on the checks, never back.
 */

/** A place in an inventory file: the file and the path of a key or value in it (`["networks", "lan", "vlan"]`). */
export interface Ref {
  file: SourceFile;
  path: DocPath;
}

/** A named entry of a section (a network, group or host) with the place that defines it. */
export interface Located<T> {
  name: string;
  value: T;
  ref: Ref;
  /** Where each merged setting came from (hosts: `uplink.mtu`, `reserved_ports`, ...). */
  origin?: Map<string, Ref>;
}

/** What the site checks are lent: reporting at a place, and naming a place. */
export interface Reporter {
  /** Records `message` at the value of `ref` (at its key with `key: true`). */
  report(ref: Ref, message: string, options?: { key?: boolean }): void;
  /** The place `more` below `ref`. */
  at(ref: Ref, ...more: (string | number)[]): Ref;
  /** `file:line:col` of the key at `ref`, for "already defined at ..." messages. */
  where(ref: Ref): string;
}

/** The problems of one site folder, in the order the checks report them. */
export class SiteProblems implements Reporter {
  readonly list: InputProblem[] = [];
  /** The folder as shown in messages (relative to the working directory). */
  private readonly dirName: string;

  constructor(dirName: string) {
    this.dirName = dirName;
  }

  report(ref: Ref, message: string, options: { key?: boolean } = {}): void {
    this.list.push(ref.file.problem(ref.path, message, options));
  }

  at(ref: Ref, ...more: (string | number)[]): Ref {
    return { file: ref.file, path: [...ref.path, ...more] };
  }

  where(ref: Ref): string {
    const pos = ref.file.position(ref.path, true);
    return `${ref.file.name}:${pos.line}:${pos.col}`;
  }

  /** A problem of the folder as a whole (no file holds the missing thing): at line 1, column 1 of the folder. */
  folder(path: string, message: string): void {
    this.list.push({ file: this.dirName, line: 1, col: 1, path, message });
  }

  /** The problems without repeats, by file, line and column (a stable sort: report order within a place). */
  sorted(): InputProblem[] {
    const unique = [...new Map(this.list.map((p) => [formatProblem(p), p])).values()];
    return unique.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
  }
}
