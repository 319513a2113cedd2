import { connect } from "node:net";
import { join } from "node:path";

/**
 * Reads of the OVS database over its own socket (OVSDB JSON-RPC, RFC 7047
 * §4.1.3 "transact" with one "select" per table, §5.2.2) instead of an
 * `ovs-vsctl` process: the resources ask for tables with the argv
 * `ovs-vsctl [--db=unix:PATH] [--timeout=N] --format=json -- --columns=A,B list T [-- ...]`
 * (what unit tests reply to with captured output), and the runner answers
 * it with the very text ovs-vsctl would print: one `{"data":[[...]],
 * "headings":[...]}` line per `list`, cells in OVSDB's JSON notation
 * (RFC 7047 §5.1; ovs-vsctl prints cells with the same ovsdb_datum_to_json
 * the server answers with). One round trip on a Unix socket: no process,
 * and every pass still reads the database as it is now (drift is seen).
 */

/** What a `list` read asks: the socket, and each table with its columns. */
export interface OvsdbListRead {
  socket: string;
  timeoutMs: number;
  tables: { table: string; columns: string[] }[];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The tables an `ovs-vsctl` argv lists, when it only lists (`--format=json`,
 * every command `--columns=... list TABLE` with no record names); undefined
 * for any other ovs-vsctl command, which runs as a process. The socket is
 * `--db=unix:PATH`, else `$OVS_RUNDIR/db.sock` (default `/var/run/openvswitch`,
 * as ovs-vsctl(8) says of --db).
 */
export function ovsdbListRead(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): OvsdbListRead | undefined {
  if (argv[0] !== "ovs-vsctl") return undefined;
  let socket = join(env.OVS_RUNDIR ?? "/var/run/openvswitch", "db.sock");
  let timeoutMs = 30_000;
  let format = false;
  let i = 1;
  for (; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i]!;
    if (a.startsWith("--db=unix:")) socket = a.slice("--db=unix:".length);
    else if (/^--timeout=\d+$/.test(a)) timeoutMs = Number(a.slice("--timeout=".length)) * 1000 || 30_000;
    else if (a === "--format=json") format = true;
    else return undefined;
  }
  if (!format || socket === "") return undefined;
  const tables: OvsdbListRead["tables"] = [];
  while (i < argv.length) {
    // "--" "--columns=A,B" "list" "TABLE"
    const [sep, cols, verb, table] = argv.slice(i, i + 4);
    if (sep !== "--" || verb !== "list" || table === undefined || !NAME.test(table) || !cols?.startsWith("--columns=")) return undefined;
    const columns = cols.slice("--columns=".length).split(",");
    if (columns.length === 0 || !columns.every((c) => NAME.test(c))) return undefined;
    tables.push({ table, columns });
    i += 4;
  }
  return tables.length > 0 ? { socket, timeoutMs, tables } : undefined;
}

/** The transact request of a read (RFC 7047 §4.1.3): one select per table, all rows, the columns asked. */
export function listTransact(read: OvsdbListRead, id: number): string {
  const ops = read.tables.map(({ table, columns }) => ({ op: "select", table, where: [], columns }));
  return JSON.stringify({ method: "transact", params: ["Open_vSwitch", ...ops], id });
}

/**
 * ovs-vsctl's `--format=json list` text of a transact result: one line per
 * table, `{"data":[[cell, ...], ...],"headings":[column, ...]}`. Throws when
 * the result is not one `{rows}` per table (an OVSDB error object).
 */
export function renderLists(read: OvsdbListRead, result: unknown): string {
  if (!Array.isArray(result) || result.length < read.tables.length) throw new Error(`ovsdb: expected ${read.tables.length} results, got ${JSON.stringify(result).slice(0, 200)}`);
  return read.tables
    .map(({ columns }, k) => {
      const r = result[k] as { rows?: Record<string, unknown>[]; error?: string; details?: string };
      if (!Array.isArray(r?.rows)) throw new Error(`ovsdb: ${r?.error ?? "no rows"}${r?.details ? `: ${r.details}` : ""}`);
      return JSON.stringify({ data: r.rows.map((row) => columns.map((c) => row[c] ?? ["set", []])), headings: columns }) + "\n";
    })
    .join("");
}

let nextId = 1;

/**
 * Runs a read over the database socket: connect, one transact, the reply,
 * close. Resolves with ovs-vsctl's text (renderLists); rejects on any
 * failure (no socket, no server, an OVSDB error, timeout), and the caller
 * then runs ovs-vsctl itself, whose message says what is wrong.
 */
export function readOvsdbLists(read: OvsdbListRead): Promise<string> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const sock = connect(read.socket);
    let buf = "";
    const done = (err: Error | undefined, text?: string) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(text!);
    };
    const timer = setTimeout(() => done(new Error(`ovsdb: no reply within ${read.timeoutMs} ms`)), read.timeoutMs);
    sock.setEncoding("utf8");
    sock.on("error", (err) => done(err));
    sock.on("connect", () => sock.write(listTransact(read, id)));
    sock.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024 * 1024) return done(new Error("ovsdb: reply over 64 MiB"));
      let msg: { id?: unknown; result?: unknown; error?: unknown };
      try {
        msg = JSON.parse(buf) as typeof msg;
      } catch {
        return; // not whole yet (the server sends one JSON object per message, no delimiter)
      }
      if (msg.id !== id) return done(new Error(`ovsdb: unexpected message ${buf.slice(0, 200)}`));
      if (msg.error != null) return done(new Error(`ovsdb: ${JSON.stringify(msg.error)}`));
      try {
        done(undefined, renderLists(read, msg.result));
      } catch (err) {
        done(err as Error);
      }
    });
    sock.on("end", () => done(new Error("ovsdb: connection closed before the reply")));
  });
}
