/** A model or adapter file that cannot be used. The message always starts with the file's path. */
export class LoadError extends Error {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = "LoadError";
  }
}
