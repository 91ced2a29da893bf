// TGI's rule: every flag has a same-named environment variable (--max-new-tokens-limit ↔ MAX_NEW_TOKENS_LIMIT),
// so a container is configured without a command line; the flag wins when both are set.

/** A setting's text and where it came from, so that an error names what the user actually set. */
export interface Setting {
  text: string;
  source: string;
}

/** The names these variables had before the rule; still read, after the rule's name, so that setups keep working. */
const FORMER_VARIABLES: Readonly<Record<string, string>> = {
  "adapter-root": "ADAPTER_ROOTS",
  "admin-token": "LORASERVE_ADMIN_TOKEN",
};

export function envVariableOf(flag: string): string {
  return flag.toUpperCase().replaceAll("-", "_");
}

function fromEnv(flag: string, env: NodeJS.ProcessEnv): Setting | undefined {
  const former = FORMER_VARIABLES[flag];
  const source = [envVariableOf(flag), ...(former === undefined ? [] : [former])].find((name) => env[name] !== undefined);
  return source === undefined ? undefined : { text: env[source] as string, source };
}

export function flagOrEnv(flag: string, flagText: string | undefined, env: NodeJS.ProcessEnv): Setting | undefined {
  return flagText !== undefined ? { text: flagText, source: `--${flag}` } : fromEnv(flag, env);
}

/**
 * A switch (a flag without a value): on when given, else what its variable says, "true" or "false" (TGI's
 * spelling); off when neither is set.
 */
export function switchOrEnv(flag: string, given: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  if (given === true) return true;
  const setting = fromEnv(flag, env);
  if (setting === undefined || setting.text === "false") return false;
  if (setting.text === "true") return true;
  throw new Error(`${setting.source} must be true or false, got ${JSON.stringify(setting.text)}`);
}

/**
 * A repeatable flag's values, else its variable's text split at `separator` (empty parts dropped); undefined
 * when neither is set.
 */
export function flagsOrEnv(flag: string, flagValues: readonly string[] | undefined, env: NodeJS.ProcessEnv, separator: string): string[] | undefined {
  if (flagValues !== undefined) return [...flagValues];
  return fromEnv(flag, env)?.text.split(separator).filter((part) => part !== "");
}

/** Whether a flag is on this command line (`--flag V` or `--flag=V`) or set through its variable. */
export function isSet(flag: string, args: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return args.some((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`)) || fromEnv(flag, env) !== undefined;
}
