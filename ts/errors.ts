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
