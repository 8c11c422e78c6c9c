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
  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super("INVALID_FILE", `${file}: ${detail}`, options);
    this.file = file;
  }
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
