import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsync as fsFsync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statfsSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import type { Stats } from "node:fs";
import { rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = constants;

/**
 * open(2) flags of a fresh temp file: O_CREAT|O_EXCL fails with EEXIST when
 * anything is at that name already (a stale file is never written through;
 * with O_EXCL a symlink there is not followed either), and O_NOFOLLOW says so
 * explicitly (ELOOP on a symlink as the last component).
 */
export const CREATE_EXCLUSIVE = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

/**
 * open(2) flags of one directory on the way to a file: O_DIRECTORY fails
 * with ENOTDIR on anything but a directory, and with O_NOFOLLOW a symlink
 * fails too (Linux gives ENOTDIR or ELOOP) instead of being followed.
 */
export const OPEN_DIR_NOFOLLOW = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

/** A path we will not write through: a symlink, or not a directory, where one was expected. `path` is the place at fault. */
export class UnsafePathError extends Error {
  readonly path: string;
  constructor(path: string, why: string) {
    super(`${path}: ${why}; refused, nothing written`);
    this.name = "UnsafePathError";
    this.path = path;
  }
}

/** This process's user and group (root on a host), the owner every file written here gets. */
function processOwner(): { uid: number; gid: number } | undefined {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  return uid !== undefined && gid !== undefined ? { uid, gid } : undefined;
}

/** A temp name beside `name` that no one can guess (48 random bits), so a planted file cannot be waiting at it. */
export function tempName(name: string): string {
  return `.${name}.${randomBytes(6).toString("hex")}.tmp`;
}

const isErrno = (err: unknown, ...codes: string[]) => codes.includes((err as NodeJS.ErrnoException).code ?? "");

/** fsync(2) on the thread pool (the callback API: no FileHandle object to make, track and close). */
function fsyncOnPool(fd: number): Promise<void> {
  return new Promise<void>((resolve, reject) => fsFsync(fd, (err) => (err ? reject(err) : resolve())));
}

/**
 * statfs(2) f_type of the filesystems that keep files in memory only:
 * tmpfs (TMPFS_MAGIC 0x01021994) and ramfs (RAMFS_MAGIC 0x858458f6),
 * include/uapi/linux/magic.h. Their fsync(2) does nothing: both set
 * `.fsync = noop_fsync` (mm/shmem.c, fs/ramfs/file-mmu.c).
 */
const MEMORY_FILESYSTEMS: ReadonlySet<number> = new Set([0x01021994, 0x858458f6]);

/**
 * True when `dir` is on tmpfs or ramfs (MEMORY_FILESYSTEMS), where fsync(2)
 * is a no-op; false otherwise, and when statfs(2) fails. Asked at every
 * write, not cached: a filesystem mounted over the directory later is seen.
 */
export function inMemoryFilesystem(dir: string): boolean {
  try {
    return MEMORY_FILESYSTEMS.has(statfsSync(dir).type);
  } catch {
    return false;
  }
}

/**
 * Writes `data` to `path` atomically with exactly `mode`, owned by this
 * process's user and group (root on a host, as the agent always left what
 * it writes): a fresh temp file beside it opened with CREATE_EXCLUSIVE
 * (O_CREAT|O_EXCL|O_NOFOLLOW, open(2)) under a random name; fstat(2) of it,
 * and fchmod(2) to `mode` only when the umask narrowed it, fchown(2) only
 * when it is not already this process's user and group (a setgid directory
 * gives its own group); written, fsync(2), then rename(2) over `path` and,
 * unless `o.syncDirectory` is false, fsync of the directory (what makes the
 * rename itself survive a crash; without it, after a crash `path` holds
 * either the old or the new content, whole, as the file was fsynced before
 * the rename). rename(2) replaces a link at `path` rather than following it,
 * so nothing is ever written outside `path`'s directory; a symlink found at
 * `path` beforehand is refused outright. The temp file is removed on
 * failure. The two fsync(2) calls, which wait for the disk, run on the
 * thread pool; every other call is made synchronously: on a local
 * filesystem open with O_CREAT, fchmod, fchown, write, close and rename
 * change the page and inode caches and the journal's running transaction,
 * and return without waiting for I/O (write(2) of a few KB may be
 * throttled only when the host is over its dirty-page limit,
 * Documentation/admin-guide/sysctl/vm.rst dirty_ratio). Each thread-pool
 * round trip costs a worker wake-up and an event-loop wake-up: 5 of them per
 * write cost 205-246 us of CPU on tmpfs, all synchronous 50-56 us, fsync
 * alone on the pool 111-140 us (5,000 checkpoint-sized writes at once,
 * process.cpuUsage, all threads). On tmpfs and ramfs (inMemoryFilesystem:
 * the agent's state on /run, the benchmark's on /dev/shm) neither fsync is
 * made, as both would do nothing there but cost their round trips.
 * @throws UnsafePathError when `path` is a symlink; the fs error (ENOSPC, EACCES...) otherwise.
 */
export async function writeOwned(path: string, data: string | Uint8Array, mode: number, o: { syncDirectory?: boolean } = {}): Promise<void> {
  // lstat(2) answers from the dentry cache: made synchronously, and without an error object for a file not there yet.
  const at = lstatSync(path, { throwIfNoEntry: false });
  if (at?.isSymbolicLink()) throw new UnsafePathError(path, "is a symbolic link");
  const dir = dirname(path);
  const owner = processOwner();
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const durable = !inMemoryFilesystem(dir);
  for (let attempt = 0; ; attempt++) {
    const tmp = join(dir, tempName(basename(path)));
    let fd: number | undefined;
    try {
      fd = openSync(tmp, CREATE_EXCLUSIVE, mode);
    } catch (err) {
      if (isErrno(err, "EEXIST") && attempt < 3) continue;
      throw err;
    }
    try {
      const made = fstatSync(fd);
      if ((made.mode & 0o7777) !== mode) fchmodSync(fd, mode);
      if (owner && (made.uid !== owner.uid || made.gid !== owner.gid)) fchownSync(fd, owner.uid, owner.gid);
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      if (durable) await fsyncOnPool(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, path);
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      await rm(tmp, { force: true });
      throw err;
    }
    break;
  }
  if (o.syncDirectory === false || !durable) return;
  let dirFd: number;
  try {
    dirFd = openSync(dir, O_RDONLY | O_DIRECTORY);
  } catch {
    return;
  }
  try {
    await fsyncOnPool(dirFd);
  } catch {
    /* a directory that cannot be fsynced (some filesystems): the rename stands */
  } finally {
    closeSync(dirFd);
  }
}

/**
 * A directory held open by its file descriptor, inside which names are
 * reached without following links: the kernel path `/proc/self/fd/<fd>/<name>`
 * resolves `/proc/self/fd/<fd>` to exactly the directory this fd holds (not
 * to whatever the original path names now), so `<name>` is looked up in it
 * like openat(2) would (Node has no openat; Linux only). Every step down
 * opens the next directory with OPEN_DIR_NOFOLLOW, so a symlink anywhere
 * below the root is refused, and swapping a directory for a link after it
 * was opened changes nothing: the check and the use are the same open(2).
 */
export class DirectoryHandle {
  /** The path as the user would write it (for messages), e.g. `/srv/image/etc/netfleet`. */
  readonly path: string;
  private fd: number | undefined;

  private constructor(fd: number, path: string) {
    this.fd = fd;
    this.path = path;
  }

  /**
   * Opens `path`, the root of what is written (an image root: the
   * operator's own choice, so a link in `path` itself is followed).
   * @throws the fs error (ENOENT, ENOTDIR).
   */
  static openRoot(path: string): DirectoryHandle {
    return new DirectoryHandle(openSync(path, O_RDONLY | O_DIRECTORY), path);
  }

  private get at(): string {
    if (this.fd === undefined) throw new Error(`${this.path}: directory handle used after close`);
    return `/proc/self/fd/${this.fd}`;
  }

  /** `name` in this directory as a kernel path (see the class docstring). */
  private entry(name: string): string {
    if (name === "" || name === "." || name === ".." || name.includes("/")) throw new Error(`${join(this.path, name)}: not a plain file name`);
    return `${this.at}/${name}`;
  }

  /** Why `name` cannot be used as a directory (it exists and is no directory). */
  private refuse(name: string): UnsafePathError {
    let what = "is not a directory";
    try {
      if (lstatSync(this.entry(name)).isSymbolicLink()) what = "is a symbolic link";
    } catch {
      /* gone meanwhile: say not a directory */
    }
    return new UnsafePathError(join(this.path, name), what);
  }

  /**
   * The directory `name` in this one, opened with OPEN_DIR_NOFOLLOW;
   * created with `createMode` (mkdir(2), which never follows a link) when
   * absent. `fixMode` also fchmod(2)s an existing one to `createMode` (a
   * directory of secrets).
   * @throws UnsafePathError on a symlink or non-directory; the fs error otherwise.
   */
  dir(name: string, o: { createMode?: number; fixMode?: boolean } = {}): DirectoryHandle {
    const path = this.entry(name);
    let fd: number;
    try {
      fd = openSync(path, OPEN_DIR_NOFOLLOW);
    } catch (err) {
      if (isErrno(err, "ELOOP", "ENOTDIR")) throw this.refuse(name);
      if (!isErrno(err, "ENOENT") || o.createMode === undefined) throw err;
      try {
        mkdirSync(path, { mode: o.createMode });
      } catch (made) {
        if (!isErrno(made, "EEXIST")) throw made;
      }
      try {
        fd = openSync(path, OPEN_DIR_NOFOLLOW);
      } catch (again) {
        if (isErrno(again, "ELOOP", "ENOTDIR")) throw this.refuse(name);
        throw again;
      }
      fchmodSync(fd, o.createMode);
    }
    if (o.fixMode && o.createMode !== undefined && (fstatSync(fd).mode & 0o7777) !== o.createMode) fchmodSync(fd, o.createMode);
    return new DirectoryHandle(fd, join(this.path, name));
  }

  /**
   * The directory at `relative` (names separated by `/`) below this one,
   * each step through dir() with `createMode` for the ones it creates;
   * the last one gets `lastMode` (created so, and fixed when it exists).
   */
  walk(relative: string, createMode: number, lastMode?: number): DirectoryHandle {
    const names = relative.split("/").filter(Boolean);
    let here: DirectoryHandle = this;
    names.forEach((name, i) => {
      const last = i === names.length - 1 && lastMode !== undefined;
      const next = here.dir(name, last ? { createMode: lastMode, fixMode: true } : { createMode });
      if (here !== this) here.close();
      here = next;
    });
    return here === this ? new DirectoryHandle(openSync(this.at, O_RDONLY | O_DIRECTORY), this.path) : here;
  }

  /**
   * The content of the file `name`, or undefined when there is none; read
   * with O_NOFOLLOW (open(2)), so a link is never read through.
   * @throws UnsafePathError on a symlink or a non-regular file.
   */
  read(name: string): Buffer | undefined {
    let fd: number;
    try {
      fd = openSync(this.entry(name), O_RDONLY | O_NOFOLLOW);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      if (isErrno(err, "ELOOP")) throw new UnsafePathError(join(this.path, name), "is a symbolic link");
      throw err;
    }
    try {
      if (!fstatSync(fd).isFile()) throw new UnsafePathError(join(this.path, name), "is not a regular file");
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** lstat(2) of `name` in this directory, or undefined when absent. */
  lstat(name: string): Stats | undefined {
    try {
      return lstatSync(this.entry(name));
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
  }

  /**
   * Writes the file `name` in this directory with exactly `mode`, owned by
   * this process's user and group: a temp file of a random name created
   * with CREATE_EXCLUSIVE (O_CREAT|O_EXCL|O_NOFOLLOW), fchmod(2), fchown(2),
   * written, fsync(2), renamed over `name` (rename(2) replaces a link, never
   * follows it), then this directory fsynced. A symlink or a non-regular file
   * at `name` is refused before anything is written.
   * @throws UnsafePathError; the fs error otherwise (temp file removed).
   */
  write(name: string, data: Uint8Array, mode: number): void {
    const at = this.lstat(name);
    if (at?.isSymbolicLink()) throw new UnsafePathError(join(this.path, name), "is a symbolic link");
    if (at && !at.isFile()) throw new UnsafePathError(join(this.path, name), "is not a regular file");
    const owner = processOwner();
    for (let attempt = 0; ; attempt++) {
      const tmp = this.entry(tempName(name));
      let fd: number | undefined;
      try {
        fd = openSync(tmp, CREATE_EXCLUSIVE, mode);
      } catch (err) {
        if (isErrno(err, "EEXIST") && attempt < 3) continue;
        throw err;
      }
      try {
        fchmodSync(fd, mode);
        if (owner) fchownSync(fd, owner.uid, owner.gid);
        for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
        fsyncSync(fd);
        closeSync(fd);
        fd = undefined;
        renameSync(tmp, this.entry(name));
      } catch (err) {
        if (fd !== undefined) closeSync(fd);
        try {
          unlinkSync(tmp);
        } catch {
          /* already gone */
        }
        throw err;
      }
      break;
    }
    fsyncSync(this.fd!);
  }

  /** The target of the symlink `name` (readlink(2): the link itself, never followed). @throws the fs error (EINVAL: not a link). */
  readLink(name: string): string {
    return readlinkSync(this.entry(name));
  }

  /** Makes `name` a symlink to `target` (replacing a link or file there; symlink(2) and unlink(2) never follow one). @throws UnsafePathError on a directory. */
  symlink(name: string, target: string): void {
    const at = this.lstat(name);
    if (at?.isDirectory()) throw new UnsafePathError(join(this.path, name), "is a directory");
    if (at) unlinkSync(this.entry(name));
    symlinkSync(target, this.entry(name));
    fsyncSync(this.fd!);
  }

  /** Closes the descriptor; idempotent. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
