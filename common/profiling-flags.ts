// The Node profiling flags a launcher passes on to the processes it starts, so that `node --cpu-prof
// --cpu-prof-dir=DIR dist/client/cli.js serve ...` profiles the router and every shard too, each into its own
// file in DIR (Node names them by process id). NODE_OPTIONS refuses --cpu-prof, so this is the only way to
// profile the whole server under load. A -name flag is not passed on: one name would have the processes
// overwrite each other's profile.
const SWITCHES = new Set(["--cpu-prof", "--heap-prof"]);
const WITH_VALUE = new Set(["--cpu-prof-dir", "--cpu-prof-interval", "--heap-prof-dir", "--heap-prof-interval"]);

/** The profiling flags among `execArgv` (this process's Node flags), values included, in their order. */
export function profilingFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const flags: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    const name = arg.split("=", 1)[0]!;
    if (SWITCHES.has(arg)) flags.push(arg);
    else if (WITH_VALUE.has(name) && arg.includes("=")) flags.push(arg);
    else if (WITH_VALUE.has(name) && i + 1 < execArgv.length) flags.push(arg, execArgv[++i]!);
  }
  return flags;
}
