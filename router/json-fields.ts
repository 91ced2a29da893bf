// Typed reads of one JSON object's fields for the HTTP APIs. A field that is absent or null reads as
// undefined; a value of the wrong type is refused through the protocol's own error, naming the field. Only
// types and the ranges the proto cannot carry are checked here: every other rule is the shard's, for all
// protocols alike.
export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A parameter this server does not implement is accepted only when its value asks for nothing. */
function asksForNothing(value: unknown): boolean {
  return value === null || value === false || (Array.isArray(value) && value.length === 0) || (isJsonObject(value) && Object.keys(value).length === 0);
}

export const UINT32_MAX = 2 ** 32 - 1;
/** The largest float32: every number field of the API is a proto `float`, which cannot carry more. */
const FLOAT32_MAX = 3.4028234663852886e38;

export class JsonFields {
  constructor(
    private readonly values: JsonObject,
    /** The protocol's error for a bad field. */
    private readonly invalid: (field: string, message: string) => Error,
  ) {}

  /** Refuses every field outside `known` that asks for something. */
  refuseUnknown(known: ReadonlySet<string>): void {
    for (const [field, value] of Object.entries(this.values)) {
      if (!known.has(field) && !asksForNothing(value)) throw this.invalid(field, `parameter \`${field}\` is not supported`);
    }
  }

  private present(field: string): unknown {
    const value = this.values[field];
    return value === null ? undefined : value;
  }

  string(field: string): string | undefined {
    const value = this.present(field);
    if (value !== undefined && typeof value !== "string") throw this.invalid(field, `\`${field}\` must be a string`);
    return value;
  }

  boolean(field: string): boolean | undefined {
    const value = this.present(field);
    if (value !== undefined && typeof value !== "boolean") throw this.invalid(field, `\`${field}\` must be a boolean`);
    return value;
  }

  /** A number a proto `float` can carry: 1e308 is valid JSON, but would fail only later, in the serializer. */
  float32(field: string): number | undefined {
    const value = this.present(field);
    if (value !== undefined && (typeof value !== "number" || !(Math.abs(value) <= FLOAT32_MAX))) {
      throw this.invalid(field, `\`${field}\` must be a number of at most ${FLOAT32_MAX} in magnitude (a float32)`);
    }
    return value;
  }

  integer(field: string, min: number, max: number): number | undefined {
    const value = this.present(field);
    if (value !== undefined && (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)) {
      throw this.invalid(field, `\`${field}\` must be an integer from ${min} to ${max}`);
    }
    return value;
  }

  /** A list of strings; with `orString`, a lone string stands for a list of one (OpenAI's `stop`). */
  strings(field: string, { orString = false } = {}): string[] | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (orString && typeof value === "string") return [value];
    if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
      throw this.invalid(field, `\`${field}\` must be ${orString ? "a string or " : ""}a list of strings`);
    }
    return value as string[];
  }

  /** A nested object, read with the same protocol error. */
  object(field: string): JsonFields | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (!isJsonObject(value)) throw this.invalid(field, `\`${field}\` must be an object`);
    return new JsonFields(value, this.invalid);
  }

  raw(field: string): unknown {
    return this.present(field);
  }
}
