import writeFileAtomic from "write-file-atomic";

/**
 * Writes `data` to `path` atomically (write-file-atomic: a temp file of its
 * own beside it, fsynced, then renamed over `path`) with `mode`, owned by
 * this process's user and group: root on a host, as the agent always left
 * what it writes. Without the explicit owner, write-file-atomic would give
 * the new file the owner of the file it replaces. @throws the fs error.
 */
export async function writeOwned(path: string, data: string, mode: number): Promise<void> {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  await writeFileAtomic(path, data, { mode, ...(uid !== undefined && gid !== undefined ? { chown: { uid, gid } } : {}) });
}
