/** Base class of every error this library throws on purpose; `code` is stable for programs to switch on. */
export class GradmmError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A file the user gave us (model, config, data) is malformed. `file` names it; `detail` says what is wrong. */
export class InvalidFileError extends GradmmError {
  readonly file: string;
  /** The 1-based line the problem is on, where one exists. */
  readonly line?: number;
  /** The field (config key path, data column, checkpoint field) the problem is in, where one exists. */
  readonly field?: string;
  constructor(file: string, detail: string, options?: { cause?: unknown; code?: string; line?: number; field?: string }) {
    super(options?.code ?? "INVALID_FILE", `${file}: ${detail}`, options);
    this.file = file;
    if (options?.line !== undefined) this.line = options.line;
    if (options?.field !== undefined) this.field = options.field;
  }
}

/** One problem in a config file: the key path, its line (when known) and what is wrong. */
export interface ConfigIssue {
  field: string;
  line?: number;
  message: string;
}

/**
 * A config file (synth, pretrain, utility) does not match its schema: an unknown key (with the nearest valid one), a
 * wrong type, a value out of bounds. `issues` lists every problem; `field` and `line` are the first one's.
 */
export class ConfigError extends InvalidFileError {
  readonly issues: ConfigIssue[];
  constructor(file: string, issues: ConfigIssue[]) {
    const lines = issues.map((i) => `${i.field}${i.line ? ` (line ${i.line})` : ""}: ${i.message}`);
    super(file, issues.length === 1 ? `invalid config: ${lines[0]}` : `invalid config:\n  ${lines.join("\n  ")}`, {
      code: "INVALID_CONFIG",
      line: issues[0]?.line,
      field: issues[0]?.field,
    });
    this.issues = issues;
  }
}

/** The private data file is unusable: bad encoding (names line and byte), bad JSON/CSV, a missing field. */
export class InvalidDataError extends InvalidFileError {
  constructor(file: string, detail: string, options?: { cause?: unknown; line?: number; field?: string }) {
    super(file, detail, { ...options, code: "INVALID_DATA" });
  }
}

/** A checkpoint given to --resume is truncated, not JSON, or misses a field; `field` names the field. */
export class InvalidCheckpointError extends InvalidFileError {
  constructor(file: string, detail: string, options?: { cause?: unknown; field?: string }) {
    super(file, detail, { ...options, code: "INVALID_CHECKPOINT" });
  }
}

/** The output folder cannot be used: it is a file, or it (or the folder it would be made in) is not writable. */
export class OutputError extends GradmmError {
  readonly path: string;
  constructor(code: "OUTPUT_NOT_DIR" | "OUTPUT_NOT_WRITABLE", file: string, detail: string, options?: { cause?: unknown }) {
    super(code, `${file}: ${detail}`, options);
    this.path = file;
  }
}

/** The run would need more memory than the machine has (checked before anything is allocated). */
export class ResourceLimitError extends GradmmError {
  readonly estimateBytes: number;
  readonly limitBytes: number;
  constructor(detail: string, estimateBytes: number, limitBytes: number) {
    super("TOO_LARGE", detail);
    this.estimateBytes = estimateBytes;
    this.limitBytes = limitBytes;
  }
}

/**
 * A model precision this machine cannot run: `precision: bf16` where the CPU lacks AVX512_BF16 (or the backend has no
 * bf16 products). `field` names the setting (`precision` in a config, `--precision`, the `precision` option);
 * `missing` says what the machine lacks.
 */
export class PrecisionError extends GradmmError {
  readonly field: string;
  readonly missing: string;
  constructor(field: string, missing: string) {
    super("PRECISION_UNSUPPORTED", `${field}: bf16 was requested, but ${missing}; use float32, or auto (bf16 only where the CPU has AVX512_BF16)`);
    this.field = field;
    this.missing = missing;
  }
}

/**
 * The native engine refused its arguments (a token id out of the vocabulary, a sequence longer than the model's
 * context, …); the message gives the numbers. After validation this means a bug, so the CLI exits with 70.
 */
export class EngineArgumentError extends GradmmError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super("ENGINE_ARGUMENT", detail, options);
  }
}

const ENGINE_MESSAGE = /(out of range|exceeds (the model's )?max_seq_len|exceeds L|give exactly one of|must be a|is not supported \(F32)/;

/**
 * Wraps an error thrown by the native addon for bad arguments into an EngineArgumentError (other errors are
 * returned unchanged), so that nothing untyped reaches a caller.
 */
export function typedEngineError(e: unknown): unknown {
  if (e instanceof GradmmError || !(e instanceof Error)) return e;
  if ((e instanceof RangeError || e instanceof TypeError || e.constructor === Error) && ENGINE_MESSAGE.test(e.message) && !e.stack?.includes("node:internal"))
    return new EngineArgumentError(e.message, { cause: e });
  return e;
}

/**
 * The CLI's exit codes: 0 success, 2 usage (unknown option, missing argument), 3 bad input (config, data, model,
 * output folder, checkpoint, a model that is not cached or cannot be fetched), 130 interrupted (Ctrl-C), 70 internal
 * (a bug: an untyped error, an engine argument error after validation, a missing native addon).
 */
export const EXIT_CODES = { ok: 0, usage: 2, input: 3, interrupted: 130, internal: 70 } as const;

/** The exit code the CLI uses for an error (see EXIT_CODES). */
export function exitCodeOf(e: unknown): number {
  if (!(e instanceof GradmmError)) return EXIT_CODES.internal;
  if (e.code === "ABORTED") return EXIT_CODES.interrupted;
  if (e.code === "ENGINE_ARGUMENT" || e.code === "NO_BINARY" || e.code === "DISPOSED") return EXIT_CODES.internal;
  return EXIT_CODES.input;
}

/** A model uses an architecture or option this engine does not implement (never run as a silently different model). */
export class UnsupportedModelError extends GradmmError {
  constructor(detail: string) {
    super("UNSUPPORTED_MODEL", detail);
  }
}

/** An object holding native memory was used after dispose(). */
export class DisposedError extends GradmmError {
  constructor(what: string) {
    super("DISPOSED", `${what} was used after dispose()`);
  }
}

/** The native addon could not be loaded: the install step (cmake-js) did not build it. */
export class NoBinaryFoundError extends GradmmError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super("NO_BINARY", `native addon not found (${detail}); run \`npm run build\` or reinstall with \`npm ci\``, options);
  }
}

/** An AbortSignal stopped the operation. */
export class AbortError extends GradmmError {
  constructor(message = "operation aborted") {
    super("ABORTED", message);
  }
}

/** A model name is not in the registry of known models (ts/registry.ts); `known` lists the names that are. */
export class UnknownModelError extends GradmmError {
  readonly model: string;
  readonly known: string[];
  constructor(model: string, known: string[]) {
    super("UNKNOWN_MODEL", `unknown model "${model}" (known: ${known.join(", ") || "none"}; or give a path to a model file or folder)`);
    this.model = model;
    this.known = known;
  }
}

/** A known model is not in the local cache yet; `gradmm fetch-model NAME` downloads it. */
export class ModelNotCachedError extends GradmmError {
  readonly model: string;
  constructor(model: string, dir: string) {
    super("MODEL_NOT_CACHED", `model "${model}" is not in the cache (${dir}); run \`gradmm fetch-model ${model}\` (or \`npm run fetch-model -- ${model}\`) first`);
    this.model = model;
  }
}

/**
 * No source of a known model could deliver it. `attempts` says, for each source tried in order, why it failed; the
 * message lists them and how to get the file by hand.
 */
export class ModelFetchError extends GradmmError {
  readonly model: string;
  readonly attempts: { source: string; reason: string }[];
  constructor(model: string, attempts: { source: string; reason: string }[], manual: string) {
    const tried = attempts.length ? attempts.map((a) => `  - ${a.source}: ${a.reason}`).join("\n") : "  (no sources)";
    super("MODEL_FETCH", `could not fetch model "${model}"; tried:\n${tried}\n${manual}`);
    this.model = model;
    this.attempts = attempts;
  }
}
