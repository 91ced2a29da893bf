// Reads and validates a safetensors header without touching the tensor data: the engine mmaps the data
// itself, so everything it is told (offsets, sizes, dtypes) must be proven consistent with the file here.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { resolve } from "node:path";
import type { DType, TensorRef } from "../../native/addon.js";
import { LoadError } from "./load-error.js";

const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };
/** A header larger than this is not a model file; refusing it keeps a lying size from exhausting memory. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, TensorRef>;
  metadata: Record<string, string>;
}

interface HeaderEntry {
  dtype: unknown;
  shape: unknown;
  data_offsets: unknown;
}

function readExactly(fd: number, length: number, position: number, path: string): Buffer {
  const buf = Buffer.alloc(length);
  const got = readSync(fd, buf, 0, length, position);
  if (got !== length) throw new LoadError(path, `truncated: wanted ${length} bytes at offset ${position}, got ${got}`);
  return buf;
}

function isDType(value: unknown): value is DType {
  return typeof value === "string" && value in DTYPE_BYTES;
}

function checkEntry(path: string, name: string, entry: HeaderEntry, dataStart: number, dataBytes: number): TensorRef {
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isDType(dtype)) {
    throw new LoadError(path, `tensor ${name} has dtype ${String(dtype)}; supported: ${Object.keys(DTYPE_BYTES).join(", ")}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new LoadError(path, `tensor ${name} has an invalid shape ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new LoadError(path, `tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const nbytes = (shape as number[]).reduce((a, d) => a * d, 1) * DTYPE_BYTES[dtype];
  if (end < begin || end - begin !== nbytes) {
    throw new LoadError(path, `tensor ${name}: data_offsets [${begin}, ${end}] do not hold ${JSON.stringify(shape)} ${dtype} (${nbytes} bytes)`);
  }
  if (end > dataBytes) {
    throw new LoadError(path, `tensor ${name} ends at byte ${end} of the data but the file holds only ${dataBytes} data bytes (truncated or lying header)`);
  }
  return { file: path, dtype, shape: shape as number[], offset: dataStart + begin, nbytes };
}

/** Reads `length` bytes at `position`, throwing a LoadError when the source holds fewer. */
type ByteReader = (length: number, position: number) => Buffer;

function parseSafetensors(path: string, size: number, read: ByteReader): SafetensorsFile {
  if (size < 8) throw new LoadError(path, `truncated: ${size} bytes is too short for a safetensors file`);
  const headerBytes = read(8, 0).readBigUInt64LE(0);
  if (headerBytes > BigInt(Math.min(size - 8, MAX_HEADER_BYTES))) {
    throw new LoadError(path, `header claims ${headerBytes} bytes but the file holds ${size - 8} after the length`);
  }
  const dataStart = 8 + Number(headerBytes);
  let header: unknown;
  try {
    header = JSON.parse(read(Number(headerBytes), 8).toString("utf8"));
  } catch (err) {
    if (err instanceof LoadError) throw err;
    throw new LoadError(path, `header is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new LoadError(path, "header is not a JSON object");
  }
  const tensors = new Map<string, TensorRef>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    if (typeof entry !== "object" || entry === null) throw new LoadError(path, `tensor ${name} has no description`);
    tensors.set(name, checkEntry(path, name, entry as HeaderEntry, dataStart, size - dataStart));
  }
  return { path, tensors, metadata };
}

export function readSafetensors(file: string): SafetensorsFile {
  const path = resolve(file);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new LoadError(path, `cannot open: ${(err as Error).message}`);
  }
  try {
    return parseSafetensors(path, fstatSync(fd).size, (length, position) => readExactly(fd, length, position, path));
  } finally {
    closeSync(fd);
  }
}

/** The same checks over a file's bytes already in memory (an adapter's host tier); `path` names it in errors. */
export function safetensorsFromBytes(path: string, bytes: Buffer): SafetensorsFile {
  return parseSafetensors(path, bytes.length, (length, position) => bytes.subarray(position, position + length));
}
