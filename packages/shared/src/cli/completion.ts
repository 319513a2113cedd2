import { Argument, type Command } from "commander";

/** One command of the tree, as a completion script needs it. */
interface Node {
  /** "" for the program, "/plan", "/hosts/approve" for its (sub)commands. */
  path: string;
  commands: { name: string; summary: string }[];
  /** `takesFile`: the value is a file or folder (`<file>`, `<dir>`, `<path>`), the only values completed as file names. */
  options: { flag: string; summary: string; takesValue: boolean; takesFile: boolean; choices: readonly string[] }[];
  /** Values of its positional arguments when they are a fixed list (e.g. bash|zsh). */
  argumentChoices: string[];
  /** Whether it takes positional arguments that are not a fixed list (offered as file names). */
  takesFiles: boolean;
}

const WORD = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const FLAG = /^--?[A-Za-z0-9][A-Za-z0-9-]*$/;
/** An option whose value names a file or folder: `--out <dir>`, `--assignment <file>`, `--ovs-db <path>`. */
const FILE_VALUE = /<[a-z-]*(file|dir|path)>/;

/** Refuses a name that would need quoting in a shell script; names here are ours, so this is a bug check. */
function word(text: string, pattern: RegExp): string {
  if (!pattern.test(text)) throw new Error(`completion: ${JSON.stringify(text)} is not a plain command or option name`);
  return text;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.trim();
}

/** Every command of the tree under `cmd`, depth first, with what can follow it. */
function walk(cmd: Command, path = ""): Node[] {
  const help = cmd.createHelp();
  const commands = help.visibleCommands(cmd);
  const args = cmd.registeredArguments;
  const node: Node = {
    path,
    commands: commands.map((c) => ({ name: word(c.name(), WORD), summary: firstLine(c.summary() || c.description()) })),
    // A command whose help shows its parents' options (showGlobalOptions) also completes them, but for
    // the program's --version, which means nothing after a subcommand.
    options: [...help.visibleOptions(cmd), ...(help.showGlobalOptions ? help.visibleGlobalOptions(cmd).filter((o) => o.long !== "--version") : [])].flatMap((o) =>
      [o.long, o.short].filter((f): f is string => f !== undefined).map((flag) => ({
        flag: word(flag, FLAG),
        summary: firstLine(o.description),
        takesValue: o.required || o.optional,
        takesFile: FILE_VALUE.test(o.flags),
        choices: (o.argChoices ?? []).map((c) => word(c, WORD)),
      })),
    ),
    argumentChoices: args.flatMap((a) => (a.argChoices ?? []).map((c) => word(c, WORD))),
    takesFiles: args.some((a) => a.argChoices === undefined),
  };
  return [node, ...commands.filter((c) => c.name() !== "help").flatMap((c) => walk(c, `${path}/${c.name()}`))];
}

/** A shell `case` statement of `arms`, or nothing when there are none (an empty case is dead code). */
function caseBlock(head: string, arms: string[]): string[] {
  return arms.length > 0 ? [head, ...arms, "  esac"] : [];
}

/** Shell function name for a program name: `netfleet-agent` -> `_netfleet_agent`. */
function functionName(program: Command): string {
  return `_${word(program.name(), WORD).replace(/[^A-Za-z0-9_]/g, "_")}`;
}

/** The union of the flags that take a value: the word after one is a value, not a command. */
function valuedFlags(nodes: Node[]): string[] {
  return [...new Set(nodes.flatMap((n) => n.options.filter((o) => o.takesValue).map((o) => o.flag)))];
}

/** The words a command's path is made of, as one case pattern: `/plan|/hosts|/hosts/approve`. */
function pathPattern(nodes: Node[]): string {
  return nodes.filter((n) => n.path !== "").map((n) => n.path).join("|");
}

/**
 * A bash completion script for `program`, generated from its commander tree:
 * subcommands, options (and their fixed choices), file names where a command
 * takes arguments or an option takes a value. Load with
 * `source <(netfleet completion bash)`.
 * @throws Error if a command or option name would need shell quoting.
 */
export function bashCompletion(program: Command): string {
  const nodes = walk(program);
  const fn = functionName(program);
  const valued = valuedFlags(nodes);
  const lines = [
    `# bash completion for ${program.name()}, generated from its commands by \`${program.name()} completion bash\`.`,
    `# Load it with: source <(${program.name()} completion bash)`,
    `${fn}() {`,
    `  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmdpath="" w i`,
    `  local commands="" options="" valued="" filed="" files=""`,
    `  for ((i = 1; i < COMP_CWORD; i++)); do`,
    `    w=\${COMP_WORDS[i]}`,
    ...(valued.length > 0 ? [`    case "$w" in ${valued.join("|")}) ((i++)); continue ;; esac`] : []),
    ...(nodes.length > 1 ? [`    case "$cmdpath/$w" in ${pathPattern(nodes)}) cmdpath="$cmdpath/$w" ;; esac`] : []),
    `  done`,
    `  case "$cmdpath" in`,
    ...nodes.map((n) => {
      const values = n.options.filter((o) => o.takesValue).map((o) => o.flag);
      const fileValues = n.options.filter((o) => o.takesFile).map((o) => o.flag);
      return `    "${n.path}") commands="${[...n.commands.map((c) => c.name), ...n.argumentChoices].join(" ")}"; options="${n.options.map((o) => o.flag).join(" ")}"; valued="${values.join(" ")}"; filed="${fileValues.join(" ")}"; files="${n.takesFiles ? "yes" : ""}" ;;`;
    }),
    `  esac`,
    ...caseBlock(
      `  case "$cmdpath $prev" in`,
      nodes.flatMap((n) => n.options.filter((o) => o.choices.length > 0).map((o) => `    "${n.path} ${o.flag}") COMPREPLY=($(compgen -W "${o.choices.join(" ")}" -- "$cur")); return ;;`)),
    ),
    `  case " $filed " in *" $prev "*) COMPREPLY=($(compgen -f -- "$cur")); return ;; esac`,
    // Any other value (a host name, a count, a URL): nothing to offer.
    `  case " $valued " in *" $prev "*) COMPREPLY=(); return ;; esac`,
    `  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$options" -- "$cur")); return; fi`,
    `  COMPREPLY=($(compgen -W "$commands" -- "$cur"))`,
    `  if [[ -n $files ]]; then COMPREPLY+=($(compgen -f -- "$cur")); fi`,
    `}`,
    `complete -o filenames -F ${fn} ${program.name()}`,
  ];
  return lines.join("\n") + "\n";
}

/** A word and its description for zsh's `_describe`: single-quoted, the name's colons escaped. */
function described(name: string, summary: string): string {
  return `'${`${name.replace(/:/g, "\\:")}:${summary}`.replace(/'/g, "'\\''")}'`;
}

/**
 * A zsh completion script for `program`, generated from its commander tree
 * like {@link bashCompletion}, with each command's and option's description.
 * Load with `source <(netfleet completion zsh)` after `compinit`, or save it
 * as `_netfleet` in a folder of `$fpath`.
 * @throws Error if a command or option name would need shell quoting.
 */
export function zshCompletion(program: Command): string {
  const nodes = walk(program);
  const fn = functionName(program);
  const valued = valuedFlags(nodes);
  const lines = [
    `#compdef ${program.name()}`,
    `# zsh completion for ${program.name()}, generated from its commands by \`${program.name()} completion zsh\`.`,
    `# Load it with: source <(${program.name()} completion zsh), or save it as ${fn} in a folder of $fpath.`,
    `${fn}() {`,
    `  local cmdpath="" w i files=""`,
    `  local -a commands options valued filed`,
    `  for ((i = 2; i < CURRENT; i++)); do`,
    `    w=\${words[i]}`,
    ...(valued.length > 0 ? [`    case "$w" in (${valued.join("|")}) ((i++)); continue ;; esac`] : []),
    ...(nodes.length > 1 ? [`    case "$cmdpath/$w" in (${pathPattern(nodes)}) cmdpath="$cmdpath/$w" ;; esac`] : []),
    `  done`,
    `  case "$cmdpath" in`,
    ...nodes.map((n) => {
      const commands = [...n.commands.map((c) => described(c.name, c.summary)), ...n.argumentChoices.map((c) => described(c, ""))];
      const values = n.options.filter((o) => o.takesValue).map((o) => o.flag);
      const fileValues = n.options.filter((o) => o.takesFile).map((o) => o.flag);
      return `    ("${n.path}") commands=(${commands.join(" ")}); options=(${n.options.map((o) => described(o.flag, o.summary)).join(" ")}); valued=(${values.join(" ")}); filed=(${fileValues.join(" ")}); files="${n.takesFiles ? "yes" : ""}" ;;`;
    }),
    `  esac`,
    ...caseBlock(
      `  case "$cmdpath \${words[CURRENT-1]}" in`,
      nodes.flatMap((n) => n.options.filter((o) => o.choices.length > 0).map((o) => `    ("${n.path} ${o.flag}") compadd -- ${o.choices.join(" ")}; return ;;`)),
    ),
    `  if (( \${filed[(Ie)\${words[CURRENT-1]}]} )); then _files; return; fi`,
    `  if (( \${valued[(Ie)\${words[CURRENT-1]}]} )); then return; fi`,
    `  if [[ \${words[CURRENT]} == -* ]]; then _describe -t options option options; return; fi`,
    `  (( \${#commands} )) && _describe -t commands command commands`,
    `  [[ -n $files ]] && _files`,
    `  return 0`,
    `}`,
    `if [[ \${funcstack[1]} == ${fn} ]]; then ${fn} "$@"; else compdef ${fn} ${program.name()}; fi`,
  ];
  return lines.join("\n") + "\n";
}

/**
 * Adds `completion bash|zsh` to `program`: prints the script for that shell,
 * generated from the whole command tree when it runs (so commands added
 * after this call are included).
 */
export function addCompletionCommand(program: Command): Command {
  const name = program.name();
  return program
    .command("completion")
    .description("Print a shell completion script for bash or zsh.")
    .addArgument(new Argument("<shell>", "bash or zsh").choices(["bash", "zsh"]))
    .addHelpText("after", `\nbash: source <(${name} completion bash)   (e.g. in ~/.bashrc)\nzsh:  source <(${name} completion zsh)    (after compinit, e.g. in ~/.zshrc)`)
    .action((shell: string, _options: unknown, cmd: Command) => {
      const script = shell === "zsh" ? zshCompletion(program) : bashCompletion(program);
      const write = cmd.configureOutput().writeOut ?? ((text: string) => process.stdout.write(text));
      write(script);
    });
}
