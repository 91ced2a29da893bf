// TGI's rule: every flag has a same-named environment variable (--max-new-tokens-limit ↔ MAX_NEW_TOKENS_LIMIT),
// so a container is configured without a command line; the flag wins when both are set.

/** A setting's text and where it came from, so that an error names what the user actually set. */
export interface Setting {
  text: string;
  source: string;
}

export function envVariableOf(flag: string): string {
  return flag.toUpperCase().replaceAll("-", "_");
}

export function flagOrEnv(flag: string, flagText: string | undefined, env: NodeJS.ProcessEnv): Setting | undefined {
  if (flagText !== undefined) return { text: flagText, source: `--${flag}` };
  const variable = envVariableOf(flag);
  const envText = env[variable];
  return envText === undefined ? undefined : { text: envText, source: variable };
}
