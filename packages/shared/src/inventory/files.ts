import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readSync, realpathSync, statSync, type Stats } from "node:fs";
import { isUtf8 } from "node:buffer";
import { dirname, join, sep } from "node:path";
import { quoteToken, type InputProblem } from "../errors.ts";

/**
 * The files of a site folder, read for `loadInventory`: which entries count
 * as inventory files and how each one is read. Every refusal is an
 * `InputProblem` naming the file; nothing here throws for bad input.
 *
 * Only regular files inside the site folder are read. An inventory comes
 * from a repository that many people write to, and `netfleet validate` runs
 * in CI on pull requests: a symlink `x.yaml -> /etc/shadow` must not bring
 * that file into an error message, a FIFO must not hang the run, and a link
 * to `/dev/zero` must not exhaust memory.
 */

/** The largest inventory file read, in bytes (4 MiB: a site of thousands of VMs is well under 1 MiB). */
export const INVENTORY_FILE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * open(2) flags for an inventory file: O_NOFOLLOW so a file swapped for a
 * symlink after it was checked is refused (ELOOP) rather than followed;
 * O_NONBLOCK so a file swapped for a FIFO cannot block the open (the fstat
 * after it refuses the FIFO).
 */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const ONLY_REGULAR = "only regular files in the site folder are read";

/**
 * The `*.yaml`/`*.yml` entries of `dir`, sorted; problems (no folder, no
 * files, a name that is not UTF-8, an extension in another case such as
 * `.YAML` or `.Yml`, which is refused rather than skipped) are pushed to `problems`. `dir` itself
 * may be a symlink to a folder: it is the operator's own argument, not a
 * file of the repository. Which entries are regular files is decided when
 * each one is read (`readInventoryFile`), so a refused entry is reported
 * with the other problems of the site.
 */
export function listInventoryFiles(dir: string, show: (p: string) => string, problems: InputProblem[]): string[] {
  const refuse = (message: string) => problems.push({ file: show(dir), line: 1, col: 1, path: "", message });
  let names: Buffer[];
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) {
      refuse(`cannot read inventory folder: it is ${kindOf(st)}, not a directory`);
      return [];
    }
    names = readdirSync(dir, { encoding: "buffer" });
  } catch (err) {
    refuse(`cannot read inventory folder: ${errnoText(err)}`);
    return [];
  }
  const files: string[] = [];
  let badNames = 0;
  for (const raw of names) {
    const name = raw.toString("utf8");
    // Any case of .yaml/.yml is looked at: a file settings.YAML holding
    // settings must not be skipped in silence (only the lowercase ones are
    // read, as editors' and CI's *.yaml globs do).
    if (!/\.ya?ml$/i.test(name)) continue;
    if (!isUtf8(raw)) {
      problems.push({ file: show(join(dir, name)), line: 1, col: 1, path: "", message: "file name is not valid UTF-8; rename the file" });
      badNames++;
      continue;
    }
    if (!/\.ya?ml$/.test(name)) {
      const ext = name.slice(name.lastIndexOf("."));
      problems.push({ file: show(join(dir, name)), line: 1, col: 1, path: "", message: `file name ends in ${quoteToken(ext)}: rename to ${ext.length === 4 ? ".yml" : ".yaml"}: only *.yaml and *.yml files are read` });
      badNames++;
      continue;
    }
    files.push(name);
  }
  files.sort();
  if (files.length === 0 && badNames === 0) refuse("no *.yaml files in the inventory folder");
  return files.map((name) => join(dir, name));
}

/**
 * The text of one inventory file (an entry `listInventoryFiles` returned),
 * or undefined with a problem pushed. Refused: directories, FIFOs, sockets
 * and devices (the message says which); a symlink unless it resolves to a
 * regular file inside the site folder (realpath of both); a file larger
 * than INVENTORY_FILE_MAX_BYTES; bytes that are not UTF-8, or a NUL byte
 * (located at line:col). The file is opened with O_NOFOLLOW|O_NONBLOCK and
 * the open descriptor must be the regular file that was checked (same
 * device and inode), so a swap between the check and the open is refused.
 * A problem never quotes the file's content, nor where a symlink out of
 * the folder points.
 */
export function readInventoryFile(path: string, show: (p: string) => string, problems: InputProblem[]): string | undefined {
  const refuse = (message: string, at: { line: number; col: number } = { line: 1, col: 1 }) => {
    problems.push({ file: show(path), ...at, path: "", message });
    return undefined;
  };
  let entry: Stats;
  try {
    entry = lstatSync(path);
  } catch (err) {
    return refuse(`cannot read file: ${errnoText(err)}`);
  }
  let target = path;
  let checked = entry;
  if (entry.isSymbolicLink()) {
    let real: string;
    let folder: string;
    try {
      folder = realpathSync(dirname(path));
      real = realpathSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return refuse(code === "ENOENT" || code === "ELOOP" ? "broken symlink (its target cannot be resolved) is refused" : `cannot resolve symlink: ${errnoText(err)}`);
    }
    const inside = real === folder || real.startsWith(folder.endsWith(sep) ? folder : folder + sep);
    if (!inside) return refuse(`symlink to a file outside the site folder is refused: ${ONLY_REGULAR} (copy the file into the folder)`);
    try {
      checked = lstatSync(real);
    } catch (err) {
      return refuse(`cannot read file: ${errnoText(err)}`);
    }
    if (!checked.isFile()) return refuse(`symlink to ${kindOf(checked)} is refused: ${ONLY_REGULAR}`);
    target = real;
  } else if (!entry.isFile()) {
    return refuse(`this is ${kindOf(entry)}, not a regular file: ${ONLY_REGULAR}`);
  }
  if (checked.size > INVENTORY_FILE_MAX_BYTES) return refuse(tooLarge(checked.size));

  let fd: number;
  try {
    fd = openSync(target, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return refuse(code === "ELOOP" ? "the file was replaced by a symlink while it was read; run again" : `cannot read file: ${errnoText(err)}`);
  }
  let bytes: Buffer;
  try {
    const opened = fstatSync(fd);
    if (!opened.isFile()) return refuse(`this is ${kindOf(opened)}, not a regular file: ${ONLY_REGULAR}`);
    if (opened.dev !== checked.dev || opened.ino !== checked.ino) return refuse("the file was replaced by another while it was read; run again");
    if (opened.size > INVENTORY_FILE_MAX_BYTES) return refuse(tooLarge(opened.size));
    bytes = readAtMost(fd, INVENTORY_FILE_MAX_BYTES + 1);
    if (bytes.length > INVENTORY_FILE_MAX_BYTES) return refuse(tooLarge(Math.max(fstatSync(fd).size, bytes.length)));
  } catch (err) {
    return refuse(`cannot read file: ${errnoText(err)}`);
  } finally {
    closeSync(fd);
  }
  const bad = firstBadByte(bytes);
  if (bad !== undefined) {
    const at = lineCol(bytes, bad);
    return bytes[bad] === 0
      ? refuse("NUL byte in the file: inventory files are UTF-8 text", at)
      : refuse(`not valid UTF-8 (byte 0x${bytes[bad]!.toString(16).padStart(2, "0")}): inventory files are UTF-8 text`, at);
  }
  return bytes.toString("utf8");
}

function tooLarge(size: number): string {
  return `file is ${size} bytes, more than the ${INVENTORY_FILE_MAX_BYTES} bytes (4 MiB) an inventory file may hold; split it into several files`;
}

/** Up to `max` bytes from `fd`, read until end of file. */
function readAtMost(fd: number, max: number): Buffer {
  const buf = Buffer.alloc(Math.min(max, 64 * 1024));
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < max) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, max - total), null);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    total += n;
  }
  return Buffer.concat(chunks, total);
}

/** "a directory", "a FIFO (named pipe)", ... from lstat/fstat (inode(7) file types). */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSymbolicLink()) return "a symlink";
  if (st.isFile()) return "a regular file";
  return "an unknown kind of file";
}

/** "ENOENT: no such file or directory", without the path Node appends. */
function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code === "string" && typeof e.message === "string") return e.message.split(",")[0]!;
  return String(e?.message ?? err);
}

/**
 * Offset of the first NUL byte or the first byte that does not start a
 * well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or undefined when the text is clean.
 */
export function firstBadByte(bytes: Buffer): number | undefined {
  const nul = bytes.indexOf(0);
  if (isUtf8(bytes)) return nul < 0 ? undefined : nul;
  const end = nul < 0 ? bytes.length : nul;
  for (let i = 0; i < end; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return nul < 0 ? undefined : nul;
}

/** 1-based line and column of byte `offset` (the bytes before it are valid UTF-8), columns in UTF-16 units like the YAML positions. */
function lineCol(bytes: Buffer, offset: number): { line: number; col: number } {
  let line = 1;
  for (let i = bytes.indexOf(0x0a); i >= 0 && i < offset; i = bytes.indexOf(0x0a, i + 1)) line++;
  const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
  return { line, col: bytes.toString("utf8", lineStart, offset).length + 1 };
}
